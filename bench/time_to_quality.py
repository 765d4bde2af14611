"""Time to quality: what `train.py --preset P --time-budget B` reaches when B is set by this machine's own speed.

In one run: time the PyTorch reference (`../shared/bench/reference_torch.py --style nanogpt`) at nanoGPT's CPU recipe
shape (4 layers, 4 heads, 128 wide, block 64, batch 12) per step, set B = 4 x the wall time of that recipe's 2000
iterations (issue 12: about 5 minutes on either machine class seen), then run `train.py --preset P --time-budget B`
as a user would (a fresh process, a cold compile cache) and print the CPU model, B, the wall time and
`val_loss_full`. `--budget-scale` shrinks B for a screening pass (say so when you report it).

    python bench/time_to_quality.py                          # the issue's measurement, preset baby
    python bench/time_to_quality.py --seeds 1337 1 2     # the default seed and two more
    python bench/time_to_quality.py --budget 90s --preset baby   # a fixed budget: no PyTorch timing
    python bench/time_to_quality.py --iters 500 --set optimizer=muon  # fixed steps (lr_decay_iters too): per token
    python bench/time_to_quality.py --seeds 1337 1 2 --arm base=baby --arm lr=baby:muon_lr=0.0125  # A/B, interleaved
    python bench/time_to_quality.py --iters 1200 --arm base=baby --arm b32=baby:batch_size=32:iters=678  # equal time

With `--arm NAME=PRESET[:KEY=VALUE...]` (repeatable) every seed runs every arm in turn (seed outer, arm inner, so a
drift in the machine's speed falls on all arms alike), and a table gives each arm's means (val loss in nats per token,
bits per character) and its paired difference from the first arm in bits per character, the unit across tokenizers.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]  # this checkout's jaxgpt, not an installed one; cpu_class beside
from cpu_class import cpu_class  # noqa: E402
REFERENCE = REPO.parent / "shared" / "bench" / "reference_torch.py"
NANOGPT_CPU = ["--style", "nanogpt", "--n-layer", "4", "--n-head", "4", "--n-embd", "128", "--block-size", "64",
               "--batch-size", "12", "--dropout", "0.0", "--lr", "1e-3", "--eval-iters", "1", "--sample-tokens", "1"]
RECIPE_ITERS = 2000   # nanoGPT's README CPU recipe: --max_iters=2000
BUDGET_FACTOR = 4     # issue 12: B = 4 x that recipe's wall time


def torch_step_s(data: Path, steps: int) -> float:
    """Seconds per training step of the PyTorch reference at nanoGPT's CPU shape (after 5 warm-up steps)."""
    out = subprocess.run([sys.executable, str(REFERENCE), "--data", str(data), *NANOGPT_CPU, "--steps", str(steps),
                          "--warmup", "5"], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["step_ms"] / 1000.0


def run_budgeted(preset: str, budget_s: float | None, seed: int, sets: list[str], iters: int | None = None) -> dict:
    """`train.py --preset P --time-budget B` (or `--max-iters N --set lr_decay_iters=N`) in a fresh process with a
    cold compile cache; its wall time and metrics."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "JAXGPT_CACHE_DIR": str(Path(tmp) / "cache")}  # cold: nothing compiled before
        cmd = [sys.executable, str(REPO / "train.py"), "--preset", preset, "--out-dir", str(Path(tmp) / "run"),
               "--seed", str(seed), *(["--time-budget", f"{budget_s:.1f}s"] if iters is None else
                                     ["--max-iters", str(iters), "--set", f"lr_decay_iters={iters}"]),
               *(["--set", *sets] if sets else [])]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        records = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
        config = json.loads((Path(tmp) / "run" / "config.json").read_text())
    train, tokens_per_step = config["train"], config["train"]["batch_size"] * config["model"]["block_size"]
    # per interval between evaluations: the first holds the training call's compile, the last the full pass
    rates = sorted(r["tokens_per_s"] for r in records[1:] if r.get("tokens_per_s"))
    plan = re.search(r"time budget \S+ s: ([\d.]+) ms/step, .*\(predicted (\d+) s\)", proc.stdout)
    return {"preset": preset, "seed": seed, "sets": sets, "budget_s": budget_s and round(budget_s, 1),
            "wall_s": round(wall, 1), "max_iters": train["max_iters"],
            # the planner's step time and predicted wall; the median step time between evaluations (one included)
            **({"plan_ms": float(plan[1]), "predicted_s": int(plan[2])} if plan else {}),
            "replans": re.findall(r"time budget: (steps .*)", proc.stdout),  # the Pace's shortenings, as logged
            "ran_ms": round(1e3 * tokens_per_step / rates[len(rates) // 2], 1) if rates else None,
            "val_loss_full": records[-1].get("val_loss_full"), "val_bpc_full": records[-1].get("val_bpc_full")}


def parse_arm(text: str) -> tuple[str, str, list[str]]:
    """"NAME=PRESET[:KEY=VALUE...]" -> (name, preset, sets); `iters=N` among the sets is that arm's own --iters."""
    name, eq, rest = text.partition("=")
    preset, *sets = rest.split(":")
    if not eq or not name or not preset:
        raise SystemExit(f"--arm {text!r}: expected NAME=PRESET[:KEY=VALUE...], e.g. lr=baby:muon_lr=0.0125")
    return name, preset, sets


def run_arms(arms: list[tuple[str, str, list[str]]], budget_s: float | None, seeds: list[int],
             iters: int | None = None) -> list[dict]:
    """Every seed runs every arm in turn (seed outer); one JSON line per run as it ends."""
    rows = []
    for seed in seeds:
        for name, preset, sets in arms:
            own = [int(s.partition("=")[2]) for s in sets if s.startswith("iters=")]  # equal-time screening of shapes
            sets = [s for s in sets if not s.startswith("iters=")]
            rows.append({"arm": name, **run_budgeted(preset, budget_s if not own else None, seed, sets,
                                                     own[-1] if own else iters)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def arms_table(rows: list[dict]) -> str:
    """Markdown: per arm its runs' mean steps, wall, val loss and bits/char, and the mean paired difference (same
    seed) from the first arm, with the differences' range."""
    names = list(dict.fromkeys(r["arm"] for r in rows))
    first = {r["seed"]: r for r in rows if r["arm"] == names[0]}
    out = ["| arm | seeds | mean steps | mean wall s | val loss (mean) | bits/char (mean) | paired diff, bits/char "
           "(range) |", "|---|---|---:|---:|---:|---:|---:|"]
    for name in names:
        rs = [r for r in rows if r["arm"] == name]
        mean = lambda key: sum(r[key] for r in rs) / len(rs)  # noqa: E731
        diffs = [r["val_bpc_full"] - first[r["seed"]]["val_bpc_full"] for r in rs if r["seed"] in first]
        diff = (f"{sum(diffs) / len(diffs):+.4f} ({min(diffs):+.4f} to {max(diffs):+.4f})"
                if diffs and name != names[0] else "")
        out.append(f"| {name} | {' '.join(str(r['seed']) for r in rs)} | {mean('max_iters'):.0f} | {mean('wall_s'):.1f} "
                   f"| {mean('val_loss_full'):.4f} | {mean('val_bpc_full'):.4f} | {diff} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="baby")
    p.add_argument("--seeds", type=int, nargs="+", default=[1337])
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="passed to train.py --set")
    p.add_argument("--budget", help="a fixed budget (e.g. 90s) instead of 4 x the PyTorch recipe's wall time")
    p.add_argument("--budget-scale", type=float, default=1.0, help="multiply the budget (screening runs)")
    p.add_argument("--torch-steps", type=int, default=50, help="timed PyTorch steps")
    p.add_argument("--iters", type=int, help="no budget: train exactly this many steps (schedule fitted to them)")
    p.add_argument("--arm", action="append", default=[], metavar="NAME=PRESET[:KEY=VALUE...]",
                   help="compare arms (repeatable); replaces --preset and --set")
    a = p.parse_args(argv)
    arms = [parse_arm(t) for t in a.arm]
    data = Path(os.environ.get("JAXGPT_DATA_DIR", REPO / "data")) / "tinyshakespeare.txt"
    print(f"{cpu_class()}; date {time.strftime('%Y-%m-%d', time.gmtime())}", flush=True)
    if a.iters is not None:
        budget = None
        print(f"fixed steps: {a.iters} (lr_decay_iters {a.iters}), no budget", flush=True)
    elif a.budget is None:
        step = torch_step_s(data, a.torch_steps)
        budget = BUDGET_FACTOR * RECIPE_ITERS * step * a.budget_scale
        print(f"PyTorch nanogpt CPU recipe: {step * 1e3:.2f} ms/step -> {RECIPE_ITERS} iterations "
              f"{RECIPE_ITERS * step:.1f} s; budget B = {BUDGET_FACTOR} x that x {a.budget_scale:g} = {budget:.1f} s",
              flush=True)
    else:
        from jaxgpt.budget import parse_duration
        budget = parse_duration(a.budget) * a.budget_scale
        print(f"fixed budget B = {budget:.1f} s", flush=True)
    if arms:
        print(arms_table(run_arms(arms, budget, a.seeds, a.iters)), flush=True)
        return
    for seed in a.seeds:
        print(json.dumps(run_budgeted(a.preset, budget, seed, a.set, a.iters)), flush=True)


if __name__ == "__main__":
    main()
