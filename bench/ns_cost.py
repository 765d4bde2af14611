"""Newton-Schulz alone on `baby`'s Muon leaves, one jitted call per way of splitting them into matrices (issue 24):
q, k, v whole (optim's default), per head (`muon_per_head`), as one 128 x 384 matrix a layer (the split Muon gives
nanoGPT's fused c_attn); the feed-forward's 128 x 512 matrices in Gram form (optim's) and with the plain iteration
(muon_cost.plain_newton_schulz); each leaf and all four together with float32 and with bf16 products
(`muon_ns_dtype`). Random N(0, 1) leaves of the preset's shapes, the first `--ns-steps` Polar Express sets, timed
interleaved; prints median ms per call [range].

    python bench/ns_cost.py
    python bench/ns_cost.py --repeats 15 --calls 20
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
import jax  # noqa: E402
import numpy as np  # noqa: E402
from optax.contrib import MuonDimensionNumbers as Dims  # noqa: E402

from cpu_class import cpu_class  # noqa: E402
from muon_cost import plain_newton_schulz  # noqa: E402

from jaxgpt import optim  # noqa: E402
from jaxgpt.model import init_params  # noqa: E402
from jaxgpt.presets import get_preset  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=11)
    p.add_argument("--calls", type=int, default=20, help="calls a timing")
    p.add_argument("--ns-steps", type=int, default=3)
    a = p.parse_args(argv)
    print(cpu_class(), flush=True)
    shapes = jax.eval_shape(init_params, replace(get_preset("baby").model, vocab_size=65), jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    leaf = lambda s: np.asarray(rng.normal(size=s.shape), s.dtype)
    blocks = shapes["blocks"]
    qkv, fc = leaf(blocks["sa"]["qkv"]["kernel"]), leaf(blocks["ffwd"]["fc"]["kernel"])
    sa_proj, ffwd_proj = leaf(blocks["sa"]["proj"]["kernel"]), leaf(blocks["ffwd"]["proj"]["kernel"])
    coeffs = optim.ns_table(a.ns_steps, "polar_express")
    ns = lambda f, dims, dtype="float32": jax.jit(lambda x: f(x, dims, coeffs, dtype))
    variants = {  # qkv (L, C, 3, H, hs), fc (L, C, 4C), sa's proj (L, H, hs, C), ffwd's proj (L, 4C, C)
        "q, k, v whole (12 x 128x128)": (ns(optim.newton_schulz, Dims((1,), (3, 4))), qkv),
        "q, k, v per head (48 x 128x32)": (ns(optim.newton_schulz, Dims((1,), (4,))), qkv),
        "q, k, v as one (4 x 128x384)": (ns(optim.newton_schulz, Dims((1,), (2, 3, 4))), qkv),
        "fc, Gram form (4 x 128x512)": (ns(optim.newton_schulz, Dims((1,), (2,))), fc),
        "fc, plain iteration": (ns(plain_newton_schulz, Dims((1,), (2,))), fc),
    }
    leaves = {"q, k, v whole": (qkv, Dims((1,), (3, 4))), "sa's proj (4 x 128x128)": (sa_proj, Dims((1, 2), (3,))),
              "fc (4 x 128x512)": (fc, Dims((1,), (2,))), "ffwd's proj (4 x 512x128)": (ffwd_proj, Dims((1,), (2,)))}
    for dtype in ("float32", "bfloat16"):
        for name, (x, dims) in leaves.items():
            variants[f"{name}, {dtype}"] = (ns(optim.newton_schulz, dims, dtype), x)
        xs, dims = [x for x, _ in leaves.values()], [d for _, d in leaves.values()]
        variants[f"all four leaves, {dtype}"] = (
            jax.jit(lambda xs, dtype=dtype: [optim.newton_schulz(x, d, coeffs, dtype) for x, d in zip(xs, dims)]), xs)
    times = {name: [] for name in variants}
    for r in range(a.repeats + 1):  # one untimed round first (compiles, warms)
        for name, (f, x) in variants.items():
            t0 = time.perf_counter()
            for _ in range(a.calls):
                y = f(x)
            jax.block_until_ready(y)
            if r:
                times[name].append((time.perf_counter() - t0) / a.calls * 1e3)
    print(f"{a.ns_steps} Polar Express steps, {a.repeats} interleaved repeats of {a.calls} calls, ms a call:")
    for name, ts in times.items():
        print(f"  {name:34s} {statistics.median(ts):7.3f} [{min(ts):.3f}-{max(ts):.3f}]")
    for name in leaves | {"all four leaves": None}:
        paired = [b / f for b, f in zip(times[f"{name}, bfloat16"], times[f"{name}, float32"])]
        print(f"  {name}: bfloat16 / float32, paired per repeat: median {statistics.median(paired):.3f} "
              f"[{min(paired):.3f}-{max(paired):.3f}]")


if __name__ == "__main__":
    main()
