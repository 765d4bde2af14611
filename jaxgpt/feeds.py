"""Where a run's batches come from, the two ways into the one train step.

`InMemory` (a text): both splits on the devices, each step samples its batch there (the fast path for small corpora).
`Shards` (`--data DIR` of token files): the Grain loader reads this process's rows of each global batch from the
memory-mapped train.bin and hands the step (x, y) batches; its state is saved in the checkpoint's `data` item.
Both evaluate the same way (estimate_loss, then the full validation pass at max_iters, capped by full_eval_tokens).
"""
from __future__ import annotations

import hashlib

import jax
import numpy as np

from . import checkpoint as ckpt
from . import sharding
from .data.loader import Windows, iterate, stream_windows, take
from .errors import CheckpointError, RunError
from .rundir import Run, with_bpc
from .training import estimate_batches, estimate_loss, evaluate_full, full_sum

BATCH_WINDOWS = 32  # windows per compiled call of the full pass (evaluate_full's batch_windows)


def make_feed(run: Run, mesh, train_np: np.ndarray, val_np: np.ndarray, start: int):
    """The feed `run` takes: Shards for a token folder, else InMemory."""
    if run.tokens is None:
        return InMemory(run, mesh, train_np, val_np)
    if run.time_budget_s:
        raise RunError(f"--time-budget times the in-memory path; --data {run.data} (token files) takes the shard "
                       f"path: give --max-iters instead")
    return Shards(run, mesh, start)


def data_identity(run: Run, train_np: np.ndarray, val_np: np.ndarray) -> str:
    """What --resume compares: the hash of the tokens, computed here for a text and read from meta.json for a token
    folder (never by re-hashing its files). A mismatch is the same warning on both paths (loop._check_restored)."""
    if run.tokens is not None:
        return run.tokens.tokens_sha256[:16]
    return hashlib.sha256(train_np.tobytes() + val_np.tobytes()).hexdigest()[:16]


def evaluate(params, feed, key, step: int, tc, val_chars: int = 0) -> dict:
    """The record of an evaluation at `step`: the lecture's estimate_loss on both splits and, at max_iters, the
    whole validation split once (`val_loss_full`; with full_eval_tokens or on the shard path, `val_full_tokens`
    says how many targets it scored); with `val_chars` (the validation text's characters) each validation loss
    also in bits per character (`val_bpc`, `val_bpc_full`; docs/data.md)."""
    losses = feed.estimate(params, key, step)
    record = {"step": step, "train_loss": round(float(losses["train"]), 5), "val_loss": round(float(losses["val"]), 5)}
    if step == tc.max_iters:
        loss, scored = feed.full(params)
        record["val_loss_full"] = round(loss, 5)
        if tc.full_eval_tokens or feed.path == "shards":
            record["val_full_tokens"] = scored
    return with_bpc(record, feed.tokens[1], val_chars)


class InMemory:
    path = "memory"

    def __init__(self, run: Run, mesh, train_np, val_np):
        self.run, self.mesh, self.val_np, self.tokens = run, mesh, val_np, (len(train_np), len(val_np))
        self.splits = {"train": sharding.put_replicated(train_np, mesh), "val": sharding.put_replicated(val_np, mesh)}

    def describe(self) -> str:
        return f"data: {self.run.data} tokenized and held on the device(s), the in-memory path"

    def train(self, step: int, n: int):
        return self.splits["train"]  # each step samples its batch on the device

    def estimate(self, params, key, step: int) -> dict:
        with sharding.mesh_context(self.mesh):  # eval batches split over the devices too
            return estimate_loss(params, self.splits, jax.random.fold_in(key, step), self.run.model, self.run.train)

    def full(self, params) -> tuple[float, int]:
        cap = self.run.train.full_eval_tokens
        val = self.val_np[:cap + 1] if cap else self.val_np
        return evaluate_full(params, val, self.run.model), len(val) - 1

    def state(self) -> dict | None:
        return None

    def restore(self, out_dir, step: int) -> None:
        pass


class Shards:
    path = "shards"

    def __init__(self, run: Run, mesh, start: int):
        mc, tc = run.model, run.train
        self.run, self.mesh, self.folder, self.tokens = run, mesh, run.tokens, run.tokens.tokens
        self.micro = tc.batch_size // tc.gradient_accumulation_steps
        self.source = Windows(self.folder, "train", "train", tc.seed, tc.batch_size, tc.gradient_accumulation_steps,
                              mc.block_size, sharding.process_rows(mesh, self.micro))
        self.it = iterate(self.source, start)

    def describe(self) -> str:
        return (f"data: token files in {self.folder.path} ({self.folder.tokens[0]:,} train / "
                f"{self.folder.tokens[1]:,} val {self.folder.dtype} ids, memory-mapped), the shard path: this "
                f"process reads rows {self.source.rows} of each micro-batch of {self.micro}")

    def train(self, step: int, n: int):
        """(x, y) global arrays (n, n_micro, B / n_micro, T) of the next n steps, from this process's rows."""
        assert self.it.get_state()["next_index"] == step, (self.it.get_state(), step)
        x, y = take(self.it, n)
        return sharding.put_batches(x, self.mesh, self.micro), sharding.put_batches(y, self.mesh, self.micro)

    def estimate(self, params, key, step: int) -> dict:
        """estimate_loss from the loader: eval_iters batches of each split, a function of (seed, step, i, row), each
        a micro-batch as the in-memory path evaluates (batch_size / gradient_accumulation_steps: what fits)."""
        mc, tc = self.run.model, self.run.train
        rows = sharding.process_rows(self.mesh, self.micro)
        losses = {}
        for split in ("train", "val"):
            src = Windows(self.folder, split, f"eval-{split}", tc.seed, self.micro, 1, mc.block_size, rows)
            x, y = (np.concatenate(a) for a in zip(*(src[step * tc.eval_iters + i] for i in range(tc.eval_iters))))
            x, y = (sharding.put_batches(a, self.mesh, self.micro) for a in (x, y))  # (eval_iters, B / n_micro, T)
            with sharding.mesh_context(self.mesh):
                losses[split] = estimate_batches(params, x, y, mc)
        return losses

    def full(self, params) -> tuple[float, int]:
        """The validation split streamed from val.bin in windows, at most full_eval_tokens targets (0: all)."""
        pieces, weight = [], 0.0
        for x, y, w in stream_windows(self.folder.split("val"), self.run.model.block_size, BATCH_WINDOWS,
                                      self.run.train.full_eval_tokens):
            pieces.append(full_sum(params, x[None], y[None], w[None], self.run.model))  # no host sync per piece
            weight += float(w.sum())  # w is the host's numpy array
        total = 0.0
        for piece in jax.device_get(pieces):  # one transfer; summed in order in float64 as before
            total += float(piece)
        return total / weight, int(weight)

    def state(self) -> dict:
        """The loader's state for the checkpoint's `data` item: Grain's iterator state and the process count."""
        return {"loader": self.it.get_state(), "process_count": jax.process_count()}

    def restore(self, out_dir, step: int) -> None:
        """Continue the stream saved with `step`. Another process count is resharded: the saved state is the next
        step of the global stream (the same on every process), and each process takes its rows of it anew."""
        saved = ckpt.read_data_state(out_dir, step)
        if saved is None or saved["loader"].get("next_index") != step:
            raise CheckpointError(f"checkpoint step {step} in {out_dir} holds no loader state for step {step} "
                                  f"({saved}); it was not written by a run on token files")
        self.it.set_state(saved["loader"])

