"""XLA CPU compiler options on jaxgpt's train step, interleaved in one process: each option set compiles the same
`training.train_steps` (nanoGPT's CPU shape, unrolled, as bench/train_speed.py), and the repeats time them one after
the other from copies of the same state. Prints wall and process-CPU ms/step (median [min-max]), the ratio to the
default, and whether the losses after the timed calls equal the default's bit for bit.

    python bench/xla_options.py                                   # the sets in OPTIONS
    python bench/xla_options.py --only default ynn_off --repeats 15

The options go to `jax.jit(...).lower(...).compile(compiler_options=...)`, so one process holds every variant
(XLA_FLAGS would need a process each). `python bench/xla_options.py --list` prints the sets.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from cpu_class import cpu_class  # noqa: E402

L = "LIBRARY_FUSION_TYPE_"
OPTIONS = {  # name -> compiler_options (jaxlib 0.10.2's DebugOptions; the default sends each dot to YNNPACK)
    "default": {},
    "ynn_off": {"xla_cpu_experimental_ynn_fusion_type": ""},            # dots to XLA's own DotThunk (Eigen)
    "ynn_dot_eltwise": {"xla_cpu_experimental_ynn_fusion_type": f"{L}DOT,{L}ELTWISE"},
    "one_thread_eigen": {"xla_cpu_multi_thread_eigen": False},
    "vector_512": {"xla_cpu_prefer_vector_width": 512},
    "no_concurrency_scheduler": {"xla_cpu_enable_concurrency_optimized_scheduler": False},
    # every dot, the weight gradients included (Eigen's by default), to oneDNN, as PyTorch's CPU matmuls go
    "onednn_dot": {"xla_cpu_experimental_ynn_fusion_type": "", "xla_cpu_use_onednn": True,
                   "xla_cpu_experimental_onednn_fusion_type": f"{L}DOT"},
    "xnn_dot": {"xla_cpu_experimental_ynn_fusion_type": "", "xla_cpu_use_xnnpack": True,
                "xla_cpu_experimental_xnn_fusion_type": f"{L}DOT"},
}


def compiled_step(mc, tc, state, data, options: dict):
    import jax

    from jaxgpt.training import train_steps
    k = tc.steps_per_call
    exe = jax.jit(lambda s, d: train_steps(s, d, mc, tc, k)).lower(state, data).compile(compiler_options=options)
    return lambda s, d, *_: exe(s, d)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=list(OPTIONS), default=list(OPTIONS))
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--set", nargs="*", default=["scan_layers=false"], metavar="KEY=VALUE")
    p.add_argument("--list", action="store_true")
    a = p.parse_args(argv)
    if a.list:
        return print("\n".join(f"{k}: {v}" for k, v in OPTIONS.items()))
    print(cpu_class(), flush=True)
    import jax

    from train_speed import JaxRunner, jax_configs
    mc, tc = jax_configs("cpu", 10, a.set)
    base = JaxRunner(mc, tc)  # compiles the default step through train_steps_jit; its state and data are reused
    start = jax.tree.map(lambda x: x.copy(), base.state)
    steps = {name: compiled_step(mc, tc, start, base.data, opts) for name, opts in OPTIONS.items() if name in a.only}
    states = {name: jax.tree.map(lambda x: x.copy(), start) for name in steps}
    wall, cpu, loss = ({name: [] for name in steps} for _ in range(3))
    for _ in range(a.repeats):
        for name, fn in steps.items():
            w0, c0 = time.perf_counter(), time.process_time()
            states[name], metrics = fn(states[name], base.data)
            loss[name].append(float(metrics["loss"][-1]))
            wall[name].append((time.perf_counter() - w0) * 1e3 / tc.steps_per_call)
            cpu[name].append((time.process_time() - c0) * 1e3 / tc.steps_per_call)
    w_def = statistics.median(wall[a.only[0]])
    print(f"{' '.join(a.set)}, {a.repeats} interleaved repeats of {tc.steps_per_call} steps; ms/step median [min-max]")
    for name in steps:
        same = "bit-identical losses" if loss[name] == loss[a.only[0]] else "losses DIFFER"
        paired = [w / d for w, d in zip(wall[name], wall[a.only[0]])]
        print(f"  {name:26s} wall {statistics.median(wall[name]):7.2f} [{min(wall[name]):.2f}-{max(wall[name]):.2f}]"
              f" x{statistics.median(wall[name]) / w_def:.3f} (paired {statistics.median(paired):.3f})"
              f"  cpu {statistics.median(cpu[name]):7.2f}  {same} to {a.only[0]}")


if __name__ == "__main__":
    main()
