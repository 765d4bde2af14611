"""LoRA (Hu et al. 2021) around `model.Dense`: counting what trains, and merging adapters into the base weights.

With `lora_rank` r > 0 every Dense (attention qkv and proj, feed-forward fc and proj, lm_head) holds lora_a (d_in, r)
and lora_b (r, d_out), B zero-initialised, and adds x @ A @ B * lora_alpha / r to x @ kernel; `training.make_optimizer`
then trains only those. Merging folds A @ B * lora_alpha / r into the kernel, leaving a plain model (lora_rank 0)
that computes the same function at no extra cost per token.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import jax
import jax.numpy as jnp

from .config import GPTConfig
from .model import init_params
from .params import ADAPTERS, count_params, is_lora, merge_params


def count_trainable(params, config: GPTConfig) -> int:
    """Parameters the optimizer updates: only the adapters when lora_rank > 0, else all."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return sum(int(p.size) for path, p in leaves if not config.lora_rank or is_lora(path))


def count_frozen(params, config: GPTConfig) -> int:
    return count_params(params) - count_trainable(params, config)


def strip_adapters(params):
    """params without any lora_a/lora_b (the base model, adapters discarded unmerged)."""
    if not isinstance(params, Mapping):
        return params
    return {k: strip_adapters(v) for k, v in params.items() if k not in ADAPTERS}


def add_adapters(base_params, config: GPTConfig, key: jax.Array):
    """Fresh adapters (A random, B zero) for a model trained without them: base_params + new lora_a/lora_b leaves.

    The base leaves are the same values, so the adapted model starts equal to the base; this is what
    `train.py --init-from DIR --set lora_rank=r` does (params.merge_params, which also checks every shape)."""
    if not config.lora_rank:
        raise ValueError(f"add_adapters needs lora_rank > 0, got {config.lora_rank}")
    return merge_params(base_params, init_params(config, key), "the base params")


def _merge_dense(p: dict, scale: float) -> dict:
    a, b, kernel = p["lora_a"], p["lora_b"], p["kernel"]
    delta = jnp.einsum("...ir,...ro->...io", a, b) * scale  # (lead..., d_in, d_out)
    merged = {k: v for k, v in p.items() if k not in ADAPTERS}
    merged["kernel"] = kernel + delta.reshape(kernel.shape).astype(kernel.dtype)
    return merged


def merge_lora(params, config: GPTConfig):
    """Fold every adapter into its kernel: returns (params without lora_a/lora_b, config with lora_rank 0).

    A kernel is laid out in_shape + features (e.g. qkv (C, 3, H, hs)), after any stacked-layer axis; its
    row-major reshape to (d_in, d_out) is the matrix Dense multiplies by, so A @ B reshapes straight onto it."""
    if not config.lora_rank:
        return params, config
    scale = config.lora_alpha / config.lora_rank

    def walk(node):
        if not isinstance(node, Mapping):
            return node
        if "lora_a" in node:
            return _merge_dense(node, scale)
        return {k: walk(v) for k, v in node.items()}
    return walk(params), replace(config, lora_rank=0)
