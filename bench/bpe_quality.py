"""Characters or subwords in the same time: `baby` on characters and on trained BPEs of 1k, 2k and 4k tokens, each
`train.py --time-budget B` in a fresh process with a cold compile cache (bench/time_to_quality.py's run_budgeted),
compared in bits per character of the validation text (`val_bpc_full`; docs/data.md).

    python bench/bpe_quality.py                       # B = 357.8 s, the character baby's budget in RESULTS.md
    python bench/bpe_quality.py --budget 120s --vocab 1024 2048

The runs go in the order given (characters first); on a shared machine each run fits its steps to the budget at its
own start, so say how loaded the machine was when you report.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from time_to_quality import cpu_model, run_budgeted  # noqa: E402

from jaxgpt.budget import parse_duration  # noqa: E402  (time_to_quality put this checkout first on sys.path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", default="357.8s", help="the time budget of every run (default: char baby's)")
    p.add_argument("--vocab", type=int, nargs="+", default=[1024, 2048, 4096], help="BPE vocabulary sizes")
    p.add_argument("--seed", type=int, default=1337)
    a = p.parse_args(argv)
    budget = parse_duration(a.budget)
    print(f"CPU: {cpu_model()}; date {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; budget {budget:.1f} s",
          flush=True)
    rows = [("char", run_budgeted("baby", budget, a.seed, []))]
    print(json.dumps(rows[-1][1]), flush=True)
    for v in a.vocab:
        rows.append((f"bpe {v}", run_budgeted("shakespeare-bpe", budget, a.seed, [f"bpe_vocab_size={v}"])))
        print(json.dumps(rows[-1][1]), flush=True)
    print("| tokens | max_iters fitted | wall s | val loss (nats/token) | val bits/char |\n|---|---:|---:|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {r['max_iters']} | {r['wall_s']} | {r['val_loss_full']:.4f} | {r['val_bpc_full']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
