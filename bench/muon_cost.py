"""Muon's cost per training step: Newton-Schulz batched by matrix shape (today's jaxgpt.optim) against optax's
per-leaf loop (before issue 24), and both against AdamW, on the same preset, interleaved in one process.

    python bench/muon_cost.py                        # baby: batched, per-leaf, optimizer=adamw
    python bench/muon_cost.py --preset baby --repeats 9 --set scan_layers=true

Each variant is its own fresh `jax.jit` of `training.train_steps` (the per-leaf one traced while `optim.muon` is
swapped for optax's per-leaf chain), compiled first, then timed A B C A B C ..., `steps_per_call` steps a call,
stopped once the loss is on the host. Prints median ms/step [range] and the ratio to AdamW (the issue's overhead),
and the same for process CPU time (on a shared machine the steadier of the two).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from cpu_class import cpu_class  # noqa: E402
from step_cost import build  # noqa: E402


def per_leaf_muon(learning_rate, momentum: float):
    """jaxgpt's Muon before issue 24: optax.contrib.scale_by_muon, Newton-Schulz vmapped over each leaf."""
    import optax
    from optax.contrib import scale_by_muon
    from optax.contrib._muon import scale_by_shape

    from jaxgpt import optim

    dims = optim._masked_dimension_numbers
    return optax.chain(scale_by_muon(beta=momentum, nesterov=True, weight_dimension_numbers=dims),
                       scale_by_shape(weight_dimension_numbers=dims), optax.scale_by_learning_rate(learning_rate))


def fresh_step():
    """A jitted train_steps of its own (its own trace and compile; the state donated as the loop does)."""
    import jax

    from jaxgpt.training import train_steps
    return jax.jit(lambda state, data, mc, tc, n: train_steps(state, data, mc, tc, n), static_argnums=(2, 3, 4),
                   donate_argnums=0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="baby")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--repeats", type=int, default=9)
    a = p.parse_args(argv)
    print(cpu_class(), flush=True)
    from jaxgpt import optim

    spec = " ".join([a.preset, *a.set])
    runs = {"muon, NS batched by shape": build(spec, 65, fresh_step())}
    batched, optim.muon = optim.muon, per_leaf_muon
    try:  # traced and compiled by build's first call, so the swap only lasts that long
        runs["muon, NS per leaf (before)"] = build(spec, 65, fresh_step())
    finally:
        optim.muon = batched
    runs["adamw"] = build(spec + " optimizer=adamw", 65, fresh_step())
    times, cpu = {name: [] for name in runs}, {name: [] for name in runs}
    for _ in range(a.repeats):
        for name, run in runs.items():
            k, c0 = run.tc.steps_per_call, time.process_time()
            times[name].append(run.time(k) / k * 1e3)
            cpu[name].append((time.process_time() - c0) / k * 1e3)  # less disturbed by other jobs than wall time
    base = statistics.median(times["adamw"])
    print(f"{spec}, {a.repeats} interleaved repeats, ms/step median [min-max], x AdamW's median:")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:28s} {med:7.2f} [{min(ts):.2f}-{max(ts):.2f}]  x{med / base:.3f}   process CPU "
              f"{statistics.median(cpu[name]):7.2f} x{statistics.median(cpu[name]) / statistics.median(cpu['adamw']):.3f}")
    paired = [b / p for b, p in zip(times["muon, NS batched by shape"], times["muon, NS per leaf (before)"])]
    print(f"  batched / per-leaf, paired per repeat: median {statistics.median(paired):.3f} "
          f"[{min(paired):.3f}-{max(paired):.3f}]")


if __name__ == "__main__":
    main()
