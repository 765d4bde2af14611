"""The shard path's loader: random (x, y) windows from memory-mapped token files, through Grain.

A window's offset is a pure function of (seed, stream, step, its row in the global batch): `window_offsets` draws
the whole global batch's offsets from a generator seeded with (seed, stream, step) and each process keeps its own
rows. So 1 process and 2 read the same global batch, a resumed run reads what an uninterrupted one would, and
the loader's state is the next step (Grain's `{"next_index": step}`). Grain's MapDataset gives random access by
step and prefetches in threads; docs/data.md ("The loader") says what is Grain's and what is ours.
"""
from __future__ import annotations

import grain
import numpy as np

from .tokenfolder import TokenFolder

STREAMS = {"train": 0, "eval-train": 1, "eval-val": 2}  # independent generators per use of the same seed
THREADS = 1      # worker threads: on 2 cores one more thread would take a core from the step's own XLA threads
PREFETCH = 8     # steps read ahead: a few compiled calls' worth at steps_per_call <= 4, each a few hundred KB
ENDLESS = 1 << 40  # the dataset's length in steps: random access by step, never exhausted by a run


def window_offsets(seed: int, stream: str, step: int, batch_size: int, n_tokens: int, block_size: int) -> np.ndarray:
    """(batch_size,) int64 start offsets of the global batch at `step`: uniform in [0, n_tokens - block_size),
    as the in-memory path's sample_batch draws them, but from numpy's generator seeded with (seed, stream, step)."""
    rng = np.random.default_rng([seed, STREAMS[stream], step])
    return rng.integers(0, n_tokens - block_size, size=batch_size, dtype=np.int64)


class Windows:
    """Grain's random-access source: item `step` is this process's rows of that step's global batch, as
    (x, y) int32 (n_micro, rows, T). Global batch row i*micro + r is micro-batch i's row r; this process
    reads rows [lo, hi) of each micro-batch. Pickles without its memmap (a worker reopens the file by path)."""

    def __init__(self, folder: TokenFolder, split: str, stream: str, seed: int, batch_size: int, n_micro: int,
                 block_size: int, rows: tuple[int, int]):
        self.folder, self.split, self.stream, self.seed = folder, split, stream, seed
        self.batch_size, self.n_micro, self.block_size, self.rows = batch_size, n_micro, block_size, rows
        self._ids = None

    def __getstate__(self):
        return {**self.__dict__, "_ids": None}

    def __len__(self) -> int:
        return ENDLESS

    def global_rows(self) -> np.ndarray:
        """Positions in the global batch this process reads: (n_micro * rows,)."""
        micro = self.batch_size // self.n_micro
        return (np.arange(self.n_micro)[:, None] * micro + np.arange(*self.rows)[None, :]).reshape(-1)

    def __getitem__(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        if self._ids is None:
            self._ids = self.folder.split(self.split)
        rows = self.global_rows()
        offsets = window_offsets(self.seed, self.stream, int(step), self.batch_size, len(self._ids),
                                 self.block_size)[rows]
        window = np.stack([self._ids[o:o + self.block_size + 1] for o in offsets]).astype(np.int32)  # (b, T+1)
        window = window.reshape(self.n_micro, -1, self.block_size + 1)
        return window[..., :-1], window[..., 1:]


def iterate(source: Windows, start: int, threads: int = THREADS, prefetch: int = PREFETCH):
    """Grain's iterator over steps start, start + 1, ... of `source`, read ahead in `threads` threads. Its
    get_state() is {"next_index": the next step}: what a checkpoint saves and set_state restores."""
    dataset = grain.MapDataset.source(source).to_iter_dataset(
        grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch))
    it = iter(dataset)
    it.set_state({"next_index": int(start)})
    return it


def take(it, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The next n steps' batches stacked: (x, y) (n, n_micro, rows, T)."""
    xs, ys = zip(*(next(it) for _ in range(n)))
    return np.stack(xs), np.stack(ys)


def stream_windows(ids: np.ndarray, block_size: int, batch_windows: int, max_tokens: int = 0):
    """The full validation pass over a memory-mapped split, a batch at a time: (x, y, w) (batch_windows, T) of
    non-overlapping windows, the last padded with zero weights; at most max_tokens targets when > 0."""
    n_targets = len(ids) - 1 if not max_tokens else min(len(ids) - 1, max_tokens)
    chunk = batch_windows * block_size
    for start in range(0, n_targets, chunk):
        n = min(chunk, n_targets - start)
        x, y, w = (np.zeros(chunk, np.int32), np.zeros(chunk, np.int32), np.zeros(chunk, np.float32))
        x[:n], y[:n], w[:n] = ids[start:start + n], ids[start + 1:start + n + 1], 1.0
        yield x.reshape(batch_windows, block_size), y.reshape(batch_windows, block_size), w.reshape(batch_windows,
                                                                                                    block_size)
