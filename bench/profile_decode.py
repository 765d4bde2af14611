"""Where one cached decode step's time goes: the `lecture` shape, float32, batch 1 (issue 14).

1. the compiled step (one token through the cache at a mid position): XLA's cost analysis (flops, bytes
   accessed), the optimised HLO's operation counts (fusions and dots are what the CPU runtime launches), and its
   time per token inside `generate`'s scan;
2. floors, each timed as its own compiled program on this CPU: (a) one matrix-vector product that streams as
   many float32 bytes as the step's weights (memory bandwidth), (b) the step's 25 matrix-vector products alone,
   back to back (the weights at their shapes), (c) a chain of tiny dependent operations (per-operation cost);
3. candidate levers: a 384 x 1536 product with float32, bfloat16 and int8 weights; layers scanned vs unrolled.

    python bench/profile_decode.py               # ~1 min
"""
from __future__ import annotations

import re
import statistics
import sys
import time
from collections import Counter
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np

from jaxgpt.model import build_model, init_cache, init_params
from jaxgpt.params import count_params
from jaxgpt.presets import PRESETS
from jaxgpt.sampling import generate


def timeit(fn, *args, reps=50) -> float:
    """Median seconds of fn(*args) (blocked), after one warm-up call."""
    jax.block_until_ready(fn(*args))
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def step_profile(config, params):
    model = build_model(config)
    step = jax.jit(lambda p, tok, cache, pos: model.apply({"params": p}, tok, cache, pos, method="decode"))
    tok, cache = jnp.zeros((1, 1), jnp.int32), init_cache(config, 1)
    compiled = step.lower(params, tok, cache, jnp.int32(128)).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    hlo = compiled.as_text()
    ops = Counter(m.group(1) for m in re.finditer(r"=\s*\S+\s+([a-z\-]+)\(", hlo))
    return cost, ops, step, tok, cache


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)
    config = PRESETS["lecture"].model
    params = init_params(config, jax.random.PRNGKey(0))
    n_params = count_params(params)
    print(f"jax {jax.__version__} ({jax.devices()[0].platform}); lecture shape: {n_params / 1e6:.2f}M float32 "
          f"parameters = {4 * n_params / 1e6:.1f} MB; cache {2 * 4 * np.prod(init_cache(config, 1)[0].shape) / 1e6:.1f} MB")

    cost, ops, step, tok, cache = step_profile(config, params)
    print(f"\n1. one cached step (XLA cost analysis): {cost.get('flops', 0) / 1e6:.1f} MFLOP, "
          f"{cost.get('bytes accessed', 0) / 1e6:.1f} MB accessed")
    print("   optimised HLO, per program (a layer's ops once: the layers are a while loop):",
          ", ".join(f"{k} {v}" for k, v in ops.most_common(12)))
    t_call = timeit(step, params, tok, cache, jnp.int32(128), reps=100)
    key = jax.random.PRNGKey(0)
    gen = lambda n: generate(params, config, jnp.zeros((1, 1), jnp.int32), n, key)
    t200, t10 = timeit(gen, 200, reps=5), timeit(gen, 10, reps=5)
    t_tok = (t200 - t10) / 190
    print(f"   per token inside generate's scan: {t_tok * 1e3:.2f} ms "
          f"({4 * n_params / t_tok / 1e9:.1f} GB/s of weights); one step called from Python: {t_call * 1e3:.2f} ms")

    # 2. floors
    C, F = config.n_embd, 4 * config.n_embd
    rows = int(n_params // 3840)
    big, x = jnp.ones((rows, 3840), jnp.float32), jnp.ones((rows,), jnp.float32)
    t_bw = timeit(jax.jit(lambda x, w: x @ w), x, big)
    shapes = [(C, 3 * C), (C, C), (C, F), (F, C)] * config.n_layer + [(C, config.vocab_size)]
    ws = [jnp.full(s, 0.01, jnp.float32) for s in shapes]

    def matvecs(v, ws):
        for w in ws:
            y = v[: w.shape[0]] @ w
            v = jnp.concatenate([y, y, y, y])[:F] if y.shape[0] < F else y  # dependent, like the real step
        return v
    t_mv = timeit(jax.jit(matvecs), jnp.ones((F,), jnp.float32), ws)

    def chain(v):
        for _ in range(200):
            v = jnp.tanh(v) * 1.0001 + jnp.sum(v) * 1e-6  # a reduction in each link: XLA cannot fuse them all
        return v
    t_chain = timeit(jax.jit(chain), jnp.ones((C,), jnp.float32)) / 200
    print(f"\n2. floors: (a) one {rows} x 3840 float32 product ({4 * rows * 3840 / 1e6:.0f} MB): {t_bw * 1e3:.2f} ms "
          f"= {4 * rows * 3840 / t_bw / 1e9:.1f} GB/s")
    print(f"   (b) the step's {len(shapes)} matrix-vector products alone: {t_mv * 1e3:.2f} ms")
    print(f"   (c) a dependent tiny op (tanh + sum of 384): {t_chain * 1e6:.1f} us each")

    # 3. levers
    v = jnp.ones((1, C), jnp.float32)
    for dt in (jnp.float32, jnp.bfloat16, jnp.int8):
        w = jnp.ones((C, F), dt)
        f = jax.jit(lambda v, w: v @ w.astype(jnp.float32))
        print(f"\n3. 384 x 1536 product, {jnp.dtype(dt).name} weights: {timeit(f, v, w, reps=200) * 1e6:.0f} us", end="")
    unrolled = replace(config, scan_layers=False)
    t_un = timeit(lambda n: generate(params, unrolled, jnp.zeros((1, 1), jnp.int32), n, key), 200, reps=5)
    print(f"\n   200 tokens, layers scanned {t200 * 1e3:.0f} ms vs unrolled {t_un * 1e3:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
