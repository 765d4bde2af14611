"""What `layers.matmul`'s backward saves: each preset's train step with it against the same step with autodiff's
x @ w (jaxgpt's Dense before 2026-12-07), interleaved in one process.

    python bench/matmul_cost.py nanogpt-cpu baby "nanogpt-cpu batch_size=12" --repeats 9

Each variant is its own fresh `jax.jit` of `training.train_steps` (the autodiff one traced while `model.matmul` is
swapped for `jnp.matmul`), compiled first, then timed A B A B ..., `steps_per_call` steps a call, stopped once the
loss is on the host. Prints median ms/step [range] of each and matmul / autodiff paired per repeat.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from cpu_class import cpu_class  # noqa: E402
from muon_cost import fresh_step  # noqa: E402
from step_cost import build, interleaved  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="+", help='"PRESET [KEY=VALUE ...]"')
    p.add_argument("--repeats", type=int, default=9)
    a = p.parse_args(argv)
    print(cpu_class(), flush=True)
    import jax.numpy as jnp

    from jaxgpt import model

    runs = {}
    for spec in a.variants:
        runs[spec, "layers.matmul"] = build(spec, 65, fresh_step())
        own, model.matmul = model.matmul, jnp.matmul
        try:  # traced and compiled by build's first call, so the swap only lasts that long
            runs[spec, "autodiff x @ w"] = build(spec, 65, fresh_step())
        finally:
            model.matmul = own
    times = interleaved(runs, a.repeats)
    print(f"{a.repeats} interleaved repeats, ms/step median [min-max]:")
    for spec in a.variants:
        for kind in ("layers.matmul", "autodiff x @ w"):
            ts = times[spec, kind]
            print(f"  {spec:32s} {kind:15s} {statistics.median(ts):7.2f} [{min(ts):.2f}-{max(ts):.2f}]")
        paired = [m / d for m, d in zip(times[spec, "layers.matmul"], times[spec, "autodiff x @ w"])]
        print(f"  {spec:32s} matmul / autodiff, paired: median {statistics.median(paired):.3f} "
              f"[{min(paired):.3f}-{max(paired):.3f}]")


if __name__ == "__main__":
    main()
