"""XLA's CPU dot by input and output type (issue 24): a batched (N, n, n) @ (N, n, n) in float32, from bf16 inputs
summed in f32 (`preferred_element_type`, what `muon_ns_dtype=bfloat16` runs), the same with the f32 -> bf16
conversion inside the timed call, bf16 in and out, and X X^T (the second operand transposed) from bf16 inputs.
Prints median microseconds per matrix [range] of interleaved repeats, GFLOP/s, and whether the compiled program
converts the bf16 inputs back to f32 before the dot.

    python bench/dot_dtypes.py
    python bench/dot_dtypes.py --sizes 128 512 --batch 12 4
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent)]
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from cpu_class import cpu_class  # noqa: E402

bf16, f32 = jnp.bfloat16, jnp.float32
FORMS = {  # name -> (function of a and b, input dtype)
    "float32": (lambda a, b: a @ b, f32),
    "bf16 inputs, f32 sums": (lambda a, b: jnp.matmul(a, b, preferred_element_type=f32), bf16),
    "f32 -> bf16 inside, f32 sums": (lambda a, b: jnp.matmul(a.astype(bf16), b.astype(bf16),
                                                             preferred_element_type=f32), f32),
    "bf16 in and out": (lambda a, b: a @ b, bf16),
    "X X^T, bf16 inputs, f32 sums": (lambda a, b: jnp.matmul(a, a.swapaxes(1, 2), preferred_element_type=f32), bf16),
}


def upcasts(f, *args) -> int:
    """Conversions to f32 of a bf16 array in the compiled program (XLA running a bf16 dot in f32)."""
    text = jax.jit(f).lower(*args).compile().as_text()
    return len(re.findall(r"= f32\[[^\]]*\]\{[^}]*\} convert\(", text))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 512, 1024])
    p.add_argument("--batch", type=int, nargs="+", default=[12, 4, 1], help="N for each size")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--calls", type=int, default=50)
    a = p.parse_args(argv)
    print(cpu_class(), flush=True)
    for n, batch in zip(a.sizes, a.batch, strict=True):
        x = jax.random.normal(jax.random.key(0), (batch, n, n))
        runs = {name: (jax.jit(f), x.astype(dtype)) for name, (f, dtype) in FORMS.items()}
        times = {name: [] for name in runs}
        for r in range(a.repeats + 1):  # one untimed round first (compiles, warms)
            for name, (f, arg) in runs.items():
                t0 = time.perf_counter()
                for _ in range(a.calls):
                    y = f(arg, arg)
                y.block_until_ready()
                if r:
                    times[name].append((time.perf_counter() - t0) / a.calls / batch * 1e6)
        print(f"{batch} x ({n}, {n}) @ ({n}, {n}), {a.repeats} interleaved repeats of {a.calls} calls, "
              f"us per matrix:")
        for name, ts in times.items():
            med, arg = statistics.median(ts), runs[name][1]
            print(f"  {name:30s} {med:9.1f} [{min(ts):.1f}-{max(ts):.1f}]  {2 * n ** 3 / med / 1e3:6.0f} GFLOP/s"
                  f"  upcasts {upcasts(FORMS[name][0], arg, arg)}")


if __name__ == "__main__":
    main()
