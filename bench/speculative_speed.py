"""Speculative sampling against jaxgpt's own `generate` on a trained run with a trained draft (issue 14).

Both sample one sequence after a newline with the same strategy (temperature 1 unless --temperature); runs
alternate generate, speculative, generate, ...; every timed call's programs were compiled by a warm-up call with
the same shapes first (speculative rounds reuse one verify program; the fallback past block_size two more).
Reports chars/s per sequence (median [min .. max]), the draft's acceptance rate and the ratio of the medians.

    python bench/speculative_speed.py --out-dir out/baby --draft out/ngram --lengths 60 200 --k 4
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

from jaxgpt.checkpoint import load_params
from jaxgpt.drafts import load_draft
from jaxgpt.sampling import generate
from jaxgpt.speculative import speculative_generate
from jaxgpt.training import make_keys


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):8.1f}  [{min(xs):.1f} .. {max(xs):.1f}]"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", type=Path, required=True, help="the GPT run")
    p.add_argument("--draft", type=Path, required=True, help="the draft run (n-gram or GPT), same tokenizer")
    p.add_argument("--lengths", type=int, nargs="+", default=[60, 200], help="new characters per sequence")
    p.add_argument("--k", type=int, nargs="+", default=[4], help="drafted tokens per round")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1337)
    a = p.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    config, params, tokenizer, _ = load_params(a.out_dir, log=lambda m: print(m, file=sys.stderr))
    draft = load_draft(a.draft, tokenizer)
    prompt, key = tokenizer.encode("\n").astype(np.int32)[None], make_keys(a.seed)["sample"]
    print(f"jax {jax.__version__}; {a.out_dir} (block {config.block_size}) with draft {a.draft} "
          f"({type(draft).__name__}); temperature {a.temperature}, batch 1")
    for n in a.lengths:
        for k in a.k:
            plain = lambda r: generate(params, config, prompt, n, jax.random.fold_in(key, r),
                                       temperature=a.temperature).block_until_ready()
            spec = lambda r: speculative_generate(params, config, prompt, n, jax.random.fold_in(key, r), draft, k=k,
                                                  temperature=a.temperature)
            for r in range(a.repeats, a.repeats + 3):  # compile (the fallback's two programs too, past block_size)
                plain(r), spec(r)
            tp, ts, acc, rounds = [], [], [], []
            for r in range(a.repeats):
                t0 = time.perf_counter()
                plain(r)
                tp.append(n / (time.perf_counter() - t0))
                t0 = time.perf_counter()
                _, st = spec(r)
                ts.append(n / (time.perf_counter() - t0))
                acc.append(st.acceptance)
                rounds.append(st.rounds)
            print(f"\n{n} new characters, k={k}, {a.repeats} interleaved runs; chars/s median [min .. max]")
            print(f"  generate      {spread(tp)}")
            print(f"  speculative   {spread(ts)}   acceptance {statistics.mean(acc):.1%}, "
                  f"{statistics.mean(rounds):.1f} GPT rounds, {st.fallback} tokens past the cache (last run)")
            print(f"  ratio (medians) {statistics.median(ts) / statistics.median(tp):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
