"""Fewer Newton-Schulz steps in Muon, per token: `train.py --preset P --max-iters N --set lr_decay_iters=N` with
`jaxgpt.optim.NS_STEPS` set to each value, every seed, in a fresh process each; prints val_loss_full per run and the
paired difference to the first value (same seed, same tokens). Deterministic: any load gives the same losses.

    python bench/muon_ns_screen.py --ns 5 3 --seeds 1337 1 --iters 600
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from cpu_class import cpu_class  # noqa: E402

RUN = """import sys; sys.path.insert(0, {repo!r})
from jaxgpt import optim; optim.NS_STEPS = {ns}
from jaxgpt.cli import train_main; raise SystemExit(train_main({argv!r}))"""


def run(preset: str, ns: int, seed: int, iters: int, sets: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--preset", preset, "--out-dir", str(Path(tmp) / "run"), "--seed", str(seed), "--max-iters",
                str(iters), "--set", f"lr_decay_iters={iters}", *sets]
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", RUN.format(repo=str(REPO), ns=ns, argv=argv)],
                              capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"NS_STEPS={ns} seed {seed} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        last = json.loads((Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    return {"ns_steps": ns, "seed": seed, "iters": iters, "wall_s": round(time.perf_counter() - t0, 1),
            "val_loss_full": last.get("val_loss_full")}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="baby")
    p.add_argument("--ns", type=int, nargs="+", default=[5, 3])
    p.add_argument("--seeds", type=int, nargs="+", default=[1337, 1])
    p.add_argument("--iters", type=int, default=600)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    a = p.parse_args(argv)
    print(cpu_class(), flush=True)
    sets = ["--set", *a.set] if a.set else []
    loss = {}
    for seed in a.seeds:
        for ns in a.ns:
            r = run(a.preset, ns, seed, a.iters, sets)
            loss[ns, seed] = r["val_loss_full"]
            print(json.dumps(r), flush=True)
    for ns in a.ns[1:]:
        d = [loss[ns, s] - loss[a.ns[0], s] for s in a.seeds]
        print(f"NS_STEPS {ns} - {a.ns[0]}: paired " + ", ".join(f"{x:+.4f}" for x in d)
              + f"; mean {sum(d) / len(d):+.4f}")


if __name__ == "__main__":
    main()
