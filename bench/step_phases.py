"""Where the CPU train step's time goes at nanoGPT's CPU shape (bench/train_speed.py's jaxgpt side): the forward
pass, forward + backward, and the whole step (batch sampling, AdamW), each 10 per compiled call, interleaved.

    python bench/step_phases.py                       # scan_layers=false, as train_speed.py
    python bench/step_phases.py scan_layers=false optimizer=muon
"""
import statistics
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
import jax

from cpu_class import cpu_class
from train_speed import JaxRunner, jax_configs
from jaxgpt.model import loss_fn
from jaxgpt.data import sample_batch


def main(argv: list[str] | None = None) -> None:
    sets = (sys.argv[1:] if argv is None else argv) or ["scan_layers=false"]
    print(cpu_class(), flush=True)
    r = JaxRunner(*jax_configs("cpu", 10, sets))
    mc, tc, data = r.mc, r.tc, r.data
    keys = jax.random.split(jax.random.PRNGKey(0), 10)  # 10 different batches, so XLA cannot hoist the work
    xs, ys = jax.vmap(lambda k: sample_batch(data, k, batch_size=tc.batch_size, block_size=mc.block_size))(keys)
    def scan10(f):  # f 10 times in one compiled call
        def g(p):
            return jax.lax.scan(lambda c, xy: (c + f(p, *xy), None), 0.0, (xs, ys))[0]
        return jax.jit(g)
    fwd = scan10(lambda p, x, y: loss_fn(p, mc, x, y, None))
    fb = scan10(lambda p, x, y: sum(g.sum() for g in jax.tree.leaves(jax.grad(lambda q: loss_fn(q, mc, x, y, None))(p))))
    for f in (fwd, fb):
        f(r.state.params).block_until_ready()  # the whole step donates the state: always its current params
    t = {"forward": [], "forward+backward": [], "whole step": []}
    cpu = {k: [] for k in t}  # process CPU time: less disturbed than wall time on a shared machine
    for _ in range(9):
        for name, f in (("forward", fwd), ("forward+backward", fb)):
            params = r.state.params
            t0, c0 = time.perf_counter(), time.process_time()
            f(params).block_until_ready()
            t[name].append((time.perf_counter() - t0) * 100)
            cpu[name].append((time.process_time() - c0) * 100)
        c0 = time.process_time()
        t["whole step"].append(r.time(10) * 100)
        cpu["whole step"].append((time.process_time() - c0) * 100)
    print(" ".join(sets))
    for k, v in t.items():
        print(f"{k:18s} {statistics.median(v):6.2f} ms/step [{min(v):.2f}-{max(v):.2f}], "
              f"process CPU {statistics.median(cpu[k]):6.2f}")


if __name__ == "__main__":
    main()
