"""Where a compiled training step's time goes on a CPU: XLA's per-thunk trace, summed by kind of operation.

Runs a preset's compiled training call (bench/step_cost.py's `build`), or bench/train_speed.py's jaxgpt model at
nanoGPT's CPU shape with `--shape cpu`, under `jax.profiler.trace` with XLA's thunk tracing on
(`--xla_cpu_enable_xprof_traceme=true`, set here before JAX starts), reads the trace back with
`jax.profiler.ProfileData` (no TensorBoard needed) and prints op time per step summed over XLA's worker threads,
by thunk kind (`ynn_fusion.12` and `ynn_fusion.3` are one kind). Shares are what to read: the tracing itself and a
busy machine change the absolute times.

    python bench/profile_step.py baby
    python bench/profile_step.py --shape cpu scan_layers=false     # train_speed.py's jaxgpt side, unrolled
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
import jax  # noqa: E402

from cpu_class import cpu_class  # noqa: E402


def op_times(trace_dir: str) -> collections.Counter:
    """Nanoseconds per thunk kind on XLA's worker threads (the executor's own wrappers left out), outermost events
    only: a wait inside a dot (`SlinkyThreadPool::Await`, its thread waiting for the other's share) is the dot's time,
    and counts as a kind of its own only where no op encloses it."""
    from jax.profiler import ProfileData

    total = collections.Counter()
    for path in Path(trace_dir).rglob("*.xplane.pb"):
        for plane in ProfileData.from_file(str(path)).planes:
            for line in plane.lines:
                if "XLAEigen" not in line.name:
                    continue
                events = sorted((ev.start_ns, -ev.duration_ns, ev.name) for ev in line.events
                                if not ev.name.startswith(("ThunkExecutor", "end: ", "ThreadpoolListener")))
                covered = 0  # end of the outermost event so far: one starting before it is nested
                for start, minus_duration, name in events:
                    if start >= covered:
                        total[re.sub(r"\.\d+$", "", name)] += -minus_duration
                        covered = start - minus_duration
    return total


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="*", help="PRESET [KEY=VALUE ...], or KEY=VALUE ... with --shape cpu")
    p.add_argument("--shape", choices=["cpu"], help="train_speed.py's jaxgpt model at nanoGPT's CPU shape")
    p.add_argument("--steps", type=int, default=50, help="steps traced (a multiple of steps_per_call)")
    p.add_argument("--top", type=int, default=15)
    a = p.parse_args(argv)
    print(cpu_class(), flush=True)
    if a.shape:
        from train_speed import JaxRunner, jax_configs
        run = JaxRunner(*jax_configs(a.shape, 10, a.spec))
    else:
        from step_cost import build
        run = build(" ".join(a.spec or ["baby"]), 65)
    run.time(a.steps)  # warm: the first calls after a compile run slow
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        jax.profiler.start_trace(tmp)
        run.time(a.steps)
        jax.profiler.stop_trace()
        wall = (time.perf_counter() - t0) / a.steps * 1e3
        total = op_times(tmp)
    op_ms = sum(total.values()) / a.steps / 1e6
    label = " ".join(a.spec) or ("its defaults" if a.shape else "baby")
    print(f"{label}{' at the ' + a.shape + ' shape' if a.shape else ''}: {wall:.2f} ms/step wall "
          f"while traced (the trace included), {op_ms:.2f} ms/step op time summed over threads")
    for kind, ns in total.most_common(a.top):
        print(f"  {ns / a.steps / 1e6:7.3f} ms/step  {100 * ns / sum(total.values()):5.1f}%  {kind}")


if __name__ == "__main__":
    main()
