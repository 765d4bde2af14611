"""The cached decode path `sampling` and `speculative` run: Block by Block, each with its own weights and cache.

`GPTLanguageModel.decode` runs the stacked Blocks as one loop over the n_layer axis. Inside a decode step that
loop slices every layer's weights out of the stack, and XLA on CPU materialises those slices: each token copied all
43 MB of the `lecture` shape's weights before reading them again (bench/decode_levers.py; docs/sampling.md). Here
the stack is split once per compiled call, outside the token loop, and the Blocks are applied one after another,
each to its own weight arrays and its own cache, which `lax.dynamic_update_slice` then updates in place. The
modules are the model's own (`embed`, `Block`, `head`): the same operations as `decode`, not a second model.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .config import GPTConfig
from .levers import block_inputs
from .model import Block, build_model, init_cache

Caches = tuple | None  # one (k, v) per layer, each (B, H, block_size, hs); None for models without a cache


def init_caches(config: GPTConfig, batch_size: int, dtype=jnp.float32) -> Caches:
    """Zeroed per-layer key/value caches for `decoder`, or None for models that need none."""
    cache = init_cache(config, batch_size, dtype)
    if cache is None:
        return None
    return tuple((cache[0][i], cache[1][i]) for i in range(config.n_layer))


def decoder(params, config: GPTConfig):
    """decode(idx (B, T), caches, pos) -> (logits (B, T, vocab_size), caches): idx fed at positions pos..pos+T-1.

    Call it inside the compiled program, outside any token loop: the per-layer weights it splits off are then
    computed once per call and read in place by every step.
    """
    model = build_model(config)
    if config.model != "gpt" or config.n_layer == 0:
        return lambda idx, caches, pos: model.apply({"params": params}, idx, None, pos, method="decode")
    block = Block(config)
    layers = [jax.tree.map(lambda a, i=i: a[i], params["blocks"]) for i in range(config.n_layer)]

    def decode(idx, caches, pos):
        x = model.apply({"params": params}, idx, pos, method="embed")  # (B, T, C)
        ves = model.apply({"params": params}, idx, method="value_embeddings")  # (k, B, T, C) or None
        new, outputs = [], []
        for i, (weights, cache) in enumerate(zip(layers, caches)):
            x, ve = block_inputs(config, i, x, outputs, params.get("skip_weights"), ves)  # U-net skip, levers.py
            x, cache = block.apply({"params": weights}, x, cache, pos, True, ve)
            new.append(cache)
            outputs.append(x)
        return model.apply({"params": params}, x, method="head"), tuple(new)
    return decode
