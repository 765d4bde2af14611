"""Per-token levers from modded-nanogpt's records, both off by default: U-net skips and value embeddings.

- `GPTConfig.unet_skips`: the output of Block i, for i < n_layer // 2, is added into the input of Block
  n_layer - 1 - i, scaled by the learned scalar `skip_weights[i]` (initialised to 1.0, as modded-nanogpt does).
  With 4 layers: Block 0's output goes into Block 3, Block 1's into Block 2.
- `GPTConfig.value_embeds` = k: k token tables `value_embeds` (k, vocab, n_embd); Blocks i and n_layer - 1 - i, for
  i < k, add table i's row of each token to their attention values: v = v + ve (modded-nanogpt's plain form,
  before its lambda-mixed one). The other Blocks are unchanged.

The model runs its stacked Blocks in `nn.scan` (`scan_blocks`): the skips travel in the scan's carry as a
(n_layer // 2, B, T, C) stack, and each layer's skip weight and table index are scanned inputs (a weight 0 and an
all-zero table where nothing arrives, which add exactly nothing). The cached decode path and the attention maps run
the Blocks in a Python loop and ask `block_inputs` what goes into each one.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def skip_source(config, i: int) -> int | None:
    """The Block whose output is added (times skip_weights[source]) into Block i's input, or None."""
    n = config.n_layer
    return n - 1 - i if config.unet_skips and i >= n - n // 2 else None


def value_table(config, i: int) -> int | None:
    """The value-embedding table Block i adds to its values (Blocks i and n_layer - 1 - i share table i), or None."""
    n, k = config.n_layer, config.value_embeds
    return i if i < k else n - 1 - i if i >= n - k else None


def block_inputs(config, i: int, x: jax.Array, outputs: list, skip_weights, ves):
    """Block i's input x (B, T, C) with its U-net skip added, and its value embedding (B, T, C) or None, in a
    Python loop over Blocks; `outputs` holds the earlier Blocks' outputs, `ves` is the model's value_embeddings."""
    src, table = skip_source(config, i), value_table(config, i)
    if src is not None:
        x = x + skip_weights[src] * outputs[src]
    return x, None if table is None else ves[table]


def _layer(block, carry, cache, lever, pos, deterministic, ves):
    """One Block inside nn.scan. carry: (x (B, T, C), skips (n_layer // 2, B, T, C) or None); lever: this layer's
    (index, skip weight, table index), each () or None; ves: (k + 1, B, T, C), the last all zero, or None."""
    x, skips = carry
    i, w, table = lever
    if skips is not None:  # read Block n-1-i's output (weight 0: none arrives), then keep this one's if i < n // 2
        h = skips.shape[0]
        x = x + w * skips[jnp.clip(block.config.n_layer - 1 - i, 0, h - 1)]
    x, cache = block(x, cache, pos, deterministic, None if ves is None else ves[table])
    if skips is not None:
        j = jnp.minimum(i, h - 1)
        skips = skips.at[j].set(jnp.where(i < h, x, skips[j]).astype(skips.dtype))
    return (x, skips), cache


def scan_blocks(block: nn.Module, x: jax.Array, cache, pos, deterministic: bool, skip_weights=None, ves=None):
    """Run the stacked `block` (params with a leading n_layer axis) over x (B, T, C) with the levers of its config;
    `cache` (k, v): (L, B, H, block_size, hs) or None. Returns (x, cache)."""
    c = block.config
    n, lever, skips = c.n_layer, (None, None, None), None
    if c.unet_skips or c.value_embeds:
        sources = [skip_source(c, i) for i in range(n)]
        weights = None if skip_weights is None else \
            jnp.stack([skip_weights[s] if s is not None else jnp.zeros((), skip_weights.dtype) for s in sources])
        tables = [value_table(c, i) for i in range(n)]
        lever = (jnp.arange(n), weights, jnp.asarray([c.value_embeds if t is None else t for t in tables], np.int32))
    if c.unet_skips:
        skips = jnp.zeros((n // 2,) + x.shape, x.dtype)
    if ves is not None:
        ves = jnp.concatenate([ves, jnp.zeros_like(ves[:1])])  # (k + 1, B, T, C): index k adds nothing
    run = nn.scan(_layer, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                  in_axes=(0, 0, nn.broadcast, nn.broadcast, nn.broadcast), length=n,
                  unroll=1 if c.scan_layers else n)
    (x, _), cache = run(block, (x, skips), cache, lever, pos, deterministic, ves)
    return x, cache
