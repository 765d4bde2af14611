"""Decode levers, A/B interleaved in one process: 200 new tokens on the `lecture` shape, float32, batch 1 (issue 14).

`generate` is the package's path (jaxgpt/decoding.py: Blocks one by one, each with its own weights and cache);
`stacked` feeds the same tokens through `GPTLanguageModel.decode` (the Blocks as one loop over the stacked
weights), the path `generate` used before. The other variants are a hand-written lecture-shape decoder, probes of
one lever each, not package code: MODE,LAYOUT,FASTPICK where MODE is `scanxs` (lax.scan over the stacked weights
and caches), `fori` (fori_loop over layers, the stacked cache carried and updated in place), `unroll` (layers
unrolled, each step slicing the stacked weights and cache), `split` (weights and caches split per layer outside the
token loop, layers unrolled); LAYOUT is the cache's `thd` (T, H, hs) or `htd`
(H, T, hs); FASTPICK 1 samples with a bare categorical (no top-k / top-p sort) instead of `pick_token`.
Times are CPU seconds of this process per token (steadier than wall time on a shared machine), median [min..max].

    python bench/decode_levers.py split,thd,0 split,htd,0 split,htd,1 fori,htd,0 scanxs,htd,0   # REPS=7 default
    HLO=split,htd,0 python bench/decode_levers.py       # also print the probe's large copies in its optimised HLO
"""
import functools
import os
import re
import statistics
import sys
import time

import jax
import jax.numpy as jnp

from jaxgpt.model import build_model, init_cache, init_params
from jaxgpt.presets import PRESETS
from jaxgpt.sampling import generate, pick_token

config = PRESETS["lecture"].model
params = init_params(config, jax.random.PRNGKey(0))
L, H, C, T, hs = config.n_layer, config.n_head, config.n_embd, config.block_size, config.head_size
b = params["blocks"]

def ln(x, p):
    m = x.mean(-1, keepdims=True); v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) * jax.lax.rsqrt(v + 1e-5) * p["scale"] + p["bias"]

def layer(x, w, kc, vc, pos, layout):
    # x (C,), kc/vc one layer's cache: layout "thd" (T,H,hs) or "htd" (H,T,hs)
    h = ln(x, w["ln1"])
    qkv = h @ w["sa"]["qkv"]["kernel"].reshape(C, 3 * C)
    q, k, v = qkv.reshape(3, H, hs)
    if layout == "thd":
        kc = jax.lax.dynamic_update_slice(kc, k[None], (pos, 0, 0)); vc = jax.lax.dynamic_update_slice(vc, v[None], (pos, 0, 0))
        wei = jnp.einsum("hd,khd->hk", q, kc) * hs ** -0.5
    else:
        kc = jax.lax.dynamic_update_slice(kc, k[:, None], (0, pos, 0)); vc = jax.lax.dynamic_update_slice(vc, v[:, None], (0, pos, 0))
        wei = jnp.einsum("hd,hkd->hk", q, kc) * hs ** -0.5
    wei = jnp.where(jnp.arange(T) <= pos, wei, -jnp.inf)
    wei = jax.nn.softmax(wei, -1)
    y = jnp.einsum("hk,khd->hd", wei, vc) if layout == "thd" else jnp.einsum("hk,hkd->hd", wei, vc)
    x = x + y.reshape(C) @ w["sa"]["proj"]["kernel"].reshape(C, C) + w["sa"]["proj"]["bias"]
    h = ln(x, w["ln2"])
    h = jax.nn.relu(h @ w["ffwd"]["fc"]["kernel"] + w["ffwd"]["fc"]["bias"])
    x = x + h @ w["ffwd"]["proj"]["kernel"] + w["ffwd"]["proj"]["bias"]
    return x, kc, vc

def make_gen(mode, layout="thd", fast_pick=False):
    def step(p, tok, cache, pos):
        x = p["token_embedding_table"]["embedding"][tok] + p["position_embedding_table"]["embedding"][pos]
        kc, vc = cache
        if mode == "split":
            kc, vc = list(kc), list(vc)
            for l in range(L):
                x, kc[l], vc[l] = layer(x, p["layers"][l], kc[l], vc[l], pos, layout)
            kc, vc = tuple(kc), tuple(vc)
        elif mode == "unroll":
            for l in range(L):
                w = jax.tree.map(lambda a: a[l], p["blocks"])
                x, k1, v1 = layer(x, w, kc[l], vc[l], pos, layout)
                kc = kc.at[l].set(k1); vc = vc.at[l].set(v1)
        elif mode == "fori":
            def body(l, c):
                x, kc, vc = c
                w = jax.tree.map(lambda a: a[l], p["blocks"])
                x, k1, v1 = layer(x, w, kc[l], vc[l], pos, layout)
                return x, jax.lax.dynamic_update_index_in_dim(kc, k1, l, 0), jax.lax.dynamic_update_index_in_dim(vc, v1, l, 0)
            x, kc, vc = jax.lax.fori_loop(0, L, body, (x, kc, vc))
        elif mode == "scanxs":
            def body(x, wkv):
                w, k, v = wkv
                x, k, v = layer(x, w, k, v, pos, layout)
                return x, (k, v)
            x, (kc, vc) = jax.lax.scan(body, x, (p["blocks"], kc, vc))
        x = ln(x, p["ln_f"])
        return x @ p["lm_head"]["kernel"] + p["lm_head"]["bias"], (kc, vc)

    @functools.partial(jax.jit, static_argnums=3)
    def gen(p, key, strat, n):
        shape = (L, T, H, hs) if layout == "thd" else (L, H, T, hs)
        cache = (jnp.zeros(shape), jnp.zeros(shape))
        if mode == "split":
            p = dict(p, layers=[jax.tree.map(lambda a: a[l], p["blocks"]) for l in range(L)])
            cache = (tuple(jnp.zeros(shape[1:]) for _ in range(L)), tuple(jnp.zeros(shape[1:]) for _ in range(L)))
        def body(c, pos):
            tok, cache, key = c
            logits, cache = step(p, tok, cache, pos)
            key, sub = jax.random.split(key)
            if fast_pick:
                nt = jax.random.categorical(sub, logits / strat[0])
            else:
                nt = pick_token(logits[None], sub, *strat)[0]
            return (nt.astype(jnp.int32), cache, key), nt
        _, toks = jax.lax.scan(body, (jnp.int32(0), cache, key), jnp.arange(n, dtype=jnp.int32))
        return toks
    return gen

strat = (jnp.float32(1.0), jnp.int32(65), jnp.float32(2.0))
key = jax.random.PRNGKey(1)
N = 200
ctx = jnp.zeros((1, 1), jnp.int32)
model = build_model(config)


@jax.jit
def stacked(p, key, strat):
    def body(c, pos):
        tok, cache, key = c
        logits, cache = model.apply({"params": p}, tok[None, None], cache, pos, method="decode")
        key, sub = jax.random.split(key)
        nt = pick_token(logits[:, -1], sub, *strat)[0].astype(jnp.int32)
        return (nt, cache, key), nt
    return jax.lax.scan(body, (jnp.int32(0), init_cache(config, 1), key), jnp.arange(N, dtype=jnp.int32))[1]


variants = {"generate": lambda: generate(params, config, ctx, N, key), "stacked": lambda: stacked(params, key, strat)}
for spec in sys.argv[1:]:
    mode, layout, fp = spec.split(",")
    g = make_gen(mode, layout, fp == "1")
    variants[spec] = (lambda g: lambda: g(params, key, strat, N))(g)
for f in variants.values():
    jax.block_until_ready(f())
ts = {k: [] for k in variants}
for r in range(int(os.environ.get("REPS", 7))):
    for k, f in variants.items():
        t0 = time.process_time(); jax.block_until_ready(f()); ts[k].append((time.process_time() - t0) / N * 1e3)
base = statistics.median(ts["generate"])
for k, v in ts.items():
    print(f"{k:14s} cpu {statistics.median(v):6.2f} ms/token [{min(v):.2f}..{max(v):.2f}]  generate / this {base / statistics.median(v):.2f}")

if os.environ.get("HLO"):
    spec=os.environ["HLO"]; mode, layout, fp = spec.split(",")
    txt = make_gen(mode, layout, fp=="1").lower(params, key, strat, N).compile().as_text()
    for line in txt.splitlines():
        if re.search(r"= f32\[[^\]]{6,}\]\S* (copy|transpose|dynamic-slice)\(", line): print(line.strip()[:160])
