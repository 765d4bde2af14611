"""Prepare throughput: `jaxgpt.data.prepare.prepare_data` (read, hash, split, encode on all cores, write the files)
against a bare `encode_batch` of the same text's pieces in memory, the floor of what `tokenizers` does here.

    python bench/prepare_speed.py                 # Tiny Shakespeare and a generated 200 MB text
    python bench/prepare_speed.py --mb 20 --repeats 3

The tokenizer is a 2048-token byte-level BPE trained on Tiny Shakespeare's train split (its training time is printed
apart); the prepare is given it as a file (`--tokenizer PATH`), so both sides encode the same ids and only the
files, the hash and the split are extra. Runs alternate (bare, prepare, bare, prepare, ...); medians and ranges are
printed, and each prepare's meta.json counts are checked against its files' lengths.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from jaxgpt.data import load_text, split_text, train_bpe  # noqa: E402
from jaxgpt.data.prepare import BATCH_PIECES, prepare_data  # noqa: E402
from jaxgpt.data.tokenizers import split_for_batch  # noqa: E402


def generated_text(base: str, mb: int, seed: int = 0) -> str:
    """About `mb` MB of Tiny Shakespeare's lines in a seeded random order (a text the BPE has not memorised whole)."""
    lines, rng, out, size = base.splitlines(keepends=True), random.Random(seed), [], 0
    while size < mb * 1_000_000:
        chunk = rng.sample(lines, len(lines))
        out.extend(chunk)
        size += sum(map(len, chunk))
    return "".join(out)


def bare_encode(tok, text: str) -> tuple[float, int]:
    """Seconds and tokens of encode_batch over the text's two splits' pieces (cut beforehand, in the same batches
    as prepare), nothing converted or written."""
    batches = [pieces[i:i + BATCH_PIECES] for part in split_text(text)
               for pieces in [split_for_batch(part)] for i in range(0, len(pieces), BATCH_PIECES)]
    t, n = time.perf_counter(), 0
    for batch in batches:
        n += sum(len(e.ids) for e in tok.tokenizer.encode_batch(batch, add_special_tokens=False))
    return time.perf_counter() - t, n


def full_prepare(path: Path, tok_file: Path, out: Path) -> tuple[float, int]:
    t = time.perf_counter()
    meta = prepare_data(str(path), out, "file", tokenizer_file=tok_file, log=lambda *a: None, progress=False)
    seconds = time.perf_counter() - t
    for split in meta["splits"].values():  # meta.json's counts are the files' lengths
        assert (out / split["file"]).stat().st_size == split["tokens"] * np.dtype(meta["dtype"]).itemsize
    assert json.loads((out / "meta.json").read_text()) == meta
    for f in out.iterdir():
        f.unlink()  # the next prepare writes from scratch (no rerun no-op)
    return seconds, meta["splits"]["train"]["tokens"] + meta["splits"]["val"]["tokens"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=int, default=200, help="size of the generated text (MB)")
    p.add_argument("--repeats", type=int, default=3, help="alternating (bare, prepare) pairs per text")
    p.add_argument("--vocab-size", type=int, default=2048)
    args = p.parse_args(argv)
    base = load_text("tinyshakespeare")
    t = time.perf_counter()
    tok = train_bpe(split_text(base)[0], args.vocab_size)
    print(f"BPE {tok.vocab_size} trained on Tiny Shakespeare's train split in {time.perf_counter() - t:.2f} s; "
          f"{os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        tok.save(d / "tokenizer.json")
        texts = {"tinyshakespeare": base, f"generated {args.mb} MB": generated_text(base, args.mb)}
        for name, text in texts.items():
            path = d / "text.txt"
            path.write_text(text)
            bare, full = [], []
            for _ in range(args.repeats):
                s, n = bare_encode(tok, text)
                bare.append(n / s)
                s, m = full_prepare(path, d / "tokenizer.json", d / "out")
                assert m == n, (m, n)
                full.append(m / s)
            ratio = [f / b for f, b in zip(full, bare)]
            print(f"{name}: {len(text):,} chars, {n:,} tokens | bare encode_batch median "
                  f"{statistics.median(bare):,.0f} tok/s ({min(bare):,.0f}-{max(bare):,.0f}) | prepare median {statistics.median(full):,.0f} tok/s "
                  f"({min(full):,.0f}-{max(full):,.0f}) | prepare/bare median {statistics.median(ratio):.2f}x "
                  f"({min(ratio):.2f}-{max(ratio):.2f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
