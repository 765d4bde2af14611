"""TPU programs compiled by the real TPU compiler on a machine without a TPU: bytes per device, collectives, FLOPs
and a roofline estimate of the step time, for the presets on Colab's and Cloud's TPU slices (docs/scaling.md).

Needs libtpu in the environment (`pip install "jax[tpu]==<the installed jax version>"`); JAX_PLATFORMS=cpu keeps
libtpu from looking for a TPU at start-up (the topologies are described without one). For each target, preset and
sharding it compiles, from shapes only, what `train.py` runs there:

- the train step as the loop jits it (the preset's steps_per_call, scan over layers, gradient accumulation), for
  the bytes per device and the collectives;
- the same step with nothing scanned (1 step, layers unrolled, the whole batch at once), because XLA's cost
  analysis counts a scan body once: its FLOPs and bytes give the roofline estimate. The TPU compiler's time grows
  with the unrolled layers, so it is compiled with 1 and 2 layers and extrapolated to n_layer (`aot.step_cost`);
- once per target and preset, on the data mesh: estimate_loss with one batch (its roofline x eval_iters x 2 splits
  x evaluations is the evaluation time), evaluate_full over the validation split and generate of sample_chars
  tokens (their bytes per device).

Where the time goes (2026-12-01, a loaded 2-core AMD EPYC Zen 4 shared machine, `shakespeare-char` on v5e-1): the
train program 105-108 s whether it scans 1 or 10 steps a call; the 6-layer unrolled step 629 s; estimate_loss,
evaluate_full and generate 18, 18 and 11 s. With --json a rerun skips the cases the file already holds: jax's
persistent compilation cache cannot help here (libtpu's compile-only client cannot load an executable back).

Everything printed is the compiler's figure or an estimate derived from it (the roofline: the larger of
FLOPs / peak and bytes accessed / HBM bandwidth), never a measurement.

    JAX_PLATFORMS=cpu python bench/tpu_compile.py                                   # the docs' table
    JAX_PLATFORMS=cpu python bench/tpu_compile.py --targets v5e-8 --presets baby --shardings data fsdp
    JAX_PLATFORMS=cpu python bench/tpu_compile.py --set dtype=bfloat16              # the bf16 override
    python bench/tpu_compile.py --table results.jsonl                               # a table from --json lines
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from jaxgpt import aot, flops
from jaxgpt.config import apply_overrides, parse_sets
from jaxgpt.presets import get_preset

# the cases, in the order they are worth compiling: every target for the two GPT presets, then baby
CASES = [("v5e-1", "data"), ("v5e-8", "data"), ("v5e-8", "fsdp"), ("v2-8", "data"), ("v6e-4", "data"),
         ("v5e-16", "fsdp")]
DEFAULT = [(t, p, k) for p in ("shakespeare-char", "lecture", "baby") for t, k in CASES] + [
    ("v5e-8", "gpt2-124m", "data"), ("v4-8", "gpt2-124m", "data")]  # GPT-2 124M on the slices it is sized for


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, round(time.perf_counter() - t, 1)


_EVAL = {}  # (target, preset, sets) -> the evaluation programs' figures: compiled once per target, in data mode


def evaluation(target: str, mc, tc, n: dict, key) -> dict:
    """estimate_loss (one batch), evaluate_full (the val split) and generate, compiled on the target's data mesh.
    An fsdp row reuses them: on a TPU the fsdp run evaluates with its split parameters, which only adds gathers."""
    if key not in _EVAL:
        mesh = aot.mesh_for(target, "data")
        est, t_est = timed(aot.compile_estimate, mc, tc, mesh, n["val"], 1)
        full, t_full = timed(aot.compile_full, mc, tc, mesh, n["val"])
        gen, t_gen = timed(aot.compile_generate, mc, tc, mesh)
        _EVAL[key] = {"estimate_cost": aot.cost(est), "estimate_memory": aot.memory(est),
                      "full_memory": aot.memory(full), "generate_memory": aot.memory(gen),
                      "compile_eval_s": {"estimate": t_est, "full": t_full, "generate": t_gen}}
    return _EVAL[key]


def measure(target: str, preset: str, kind: str, sets: dict) -> dict:
    p = get_preset(preset)
    mc, tc = apply_overrides(p.model, p.train, {**sets, "sharding": kind})
    mesh = aot.mesh_for(target, kind)
    n = aot.splits_shapes(block_size=mc.block_size)
    train, t_train = timed(aot.compile_train, mc, tc, mesh, n["train"])
    one, t_one = timed(aot.step_cost, mc, tc, mesh, n["train"])
    ev = evaluation(target, mc, tc, n, (target, preset, json.dumps(sets, sort_keys=True)))
    chip = mesh.devices.flat[0].device_kind
    step, batch = aot.roofline(one, chip), aot.roofline(ev["estimate_cost"], chip)
    state = aot.abstract_state(mc, tc, mesh)
    tokens = tc.batch_size * mc.block_size
    n_evals = tc.max_iters // tc.eval_interval + 1
    eval_s = batch["step_s"] * tc.eval_iters * 2 * n_evals
    hbm = aot.HBM[chip][0]
    return {
        "target": target, "preset": preset, "sharding": kind, "sets": sets, "devices": mesh.size,
        "processes": len({d.process_index for d in mesh.devices.flat}),
        "compile_s": t_train, "compile_step_cost_s": t_one,
        "train_memory": aot.memory(train), "train_peak_frac_hbm": aot.peak_bytes(aot.memory(train)) / hbm,
        "state_bytes": aot.state_bytes(train, state), "collectives": dict(aot.collectives(train)),
        "xla_flops_per_step": one["flops"], "bytes_per_step": one["bytes"],
        "flops_py_per_step": flops.flops_per_token(mc, state.params) * tokens / mesh.size,
        "roofline": step, "tokens_per_s": tokens / step["step_s"],
        "train_s": tc.max_iters * step["step_s"], "eval_s": eval_s,
        **ev, "generate_peak_frac_hbm": aot.peak_bytes(ev["generate_memory"]) / hbm,
    }


def recorded(path: str | None) -> set:
    """(target, preset, sharding, sets) of the cases a --json file already holds: a rerun compiles only the rest
    (libtpu's compile-only client cannot read jax's persistent compilation cache back, so the file is the cache)."""
    try:
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except (TypeError, FileNotFoundError):
        return set()
    return {(r["target"], r["preset"], r["sharding"], json.dumps(r["sets"], sort_keys=True)) for r in rows}


def row(r: dict) -> str:
    mb = lambda b: f"{b / 1e6:,.1f}"
    m, rl = r["train_memory"], r["roofline"]
    coll = ", ".join(f"{k} {v}" for k, v in sorted(r["collectives"].items())) or "none"
    preset = " ".join([r["preset"], *(f"{k}={v}" for k, v in sorted(r["sets"].items()))])  # --set overrides shown
    whole, hours = r["train_s"] + r["eval_s"], 1e9 / r["tokens_per_s"] / 3600  # 1B training tokens, no evaluations
    return (f"| {r['target']} | {preset} | {r['sharding']} | {mb(m['arguments'])} | {mb(m['temporaries'])} | "
            f"{mb(m['outputs'])} | {r['train_peak_frac_hbm']:.1%} | {coll} | "
            f"{r['xla_flops_per_step'] / 1e9:,.1f} / {r['flops_py_per_step'] / 1e9:,.1f} | "
            f"{rl['compute_s'] * 1e3:.2f} / {rl['memory_s'] * 1e3:.2f} ({rl['bound']}) | {r['tokens_per_s']:,.0f} | "
            f"{whole:,.{0 if whole >= 10 else 1}f} | {hours:,.{1 if hours >= 1 else 2}f} |")


HEADER = ("| target | preset | sharding | arguments MB | temporaries MB | outputs MB | peak / HBM | collectives "
          "(train program) | GFLOPs per step per device, XLA / flops.py | roofline ms, compute / memory | "
          "tokens/s (est.) | whole run s (est.) | 1B tokens h (est.) |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", nargs="+", choices=list(aot.TARGETS))
    ap.add_argument("--presets", nargs="+", default=None)
    ap.add_argument("--shardings", nargs="+", default=["data"], choices=["data", "fsdp"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", help="append one JSON line per case to this file")
    ap.add_argument("--table", metavar="JSONL", help="print the table of cases recorded by --json, compile nothing")
    args = ap.parse_args(argv)
    if args.table:
        with open(args.table) as f:
            print(HEADER + "\n" + "\n".join(row(json.loads(line)) for line in f if line.strip()))
        return 0
    reason = aot.unavailable()
    if reason:
        print(f"tpu_compile.py: error: {reason}", file=sys.stderr)
        return 2
    cases = DEFAULT if not (args.targets or args.presets) else [
        (t, p, k) for t in args.targets or list(aot.TARGETS) for p in args.presets or ["shakespeare-char"]
        for k in args.shardings]
    sets, done = parse_sets(args.set), recorded(args.json)
    print(HEADER, flush=True)
    for target, preset, kind in cases:
        if (target, preset, kind, json.dumps(sets, sort_keys=True)) in done:
            continue
        r = measure(target, preset, kind, sets)
        print(row(r), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
