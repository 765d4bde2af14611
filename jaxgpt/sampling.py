"""`generate`: the lecture's sampling loop as one compiled program.

The prompt (cropped to its last block_size tokens, as the lecture does) is prefilled into a per-layer key/value
cache of block_size slots; then `lax.scan` feeds one token per step at the next position. Once the context
would pass block_size, the lecture crops to the last block_size tokens, which shifts every position and so
every layer's keys and values: from then on each step recomputes the whole block_size window (exactly what
cropping gives; costs one full forward pass per token). The RNG key is carried and split in the scan.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .config import GPTConfig
from .model import build_model, init_cache


def pick_token(logits: jax.Array, key: jax.Array, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None) -> jax.Array:
    """Next token from (B, V) logits: greedy at temperature 0, else softmax(logits / temperature) restricted
    to the top_k most likely and/or the smallest set whose probability reaches top_p (nucleus)."""
    if temperature == 0:
        return jnp.argmax(logits, axis=-1)
    logits = logits / temperature
    if top_k is not None:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p is not None:
        sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly more likely tokens
        cutoff = jnp.min(jnp.where(before < top_p, sorted_logits, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < cutoff, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1)


@functools.partial(jax.jit, static_argnames=("config", "max_new_tokens", "temperature", "top_k", "top_p"))
def _generate(params, prompt, key, config: GPTConfig, max_new_tokens: int, temperature: float, top_k, top_p):
    model = build_model(config)
    T = config.block_size
    ctx = prompt[:, -T:]  # (B, Tc), the lecture's idx[:, -block_size:]
    B, Tc = ctx.shape
    pick = functools.partial(pick_token, temperature=temperature, top_k=top_k, top_p=top_p)
    decode = lambda idx, cache, pos: model.apply({"params": params}, idx, cache, pos, method="decode")

    logits, cache = decode(ctx, init_cache(config, B), 0)
    key, sub = jax.random.split(key)
    first = pick(logits[:, -1], sub)  # (B,)

    n_cached = min(max_new_tokens - 1, T - Tc)  # steps whose input still fits in the cache

    def cached_step(carry, pos):
        tok, cache, key = carry
        logits, cache = decode(tok[:, None], cache, pos)
        key, sub = jax.random.split(key)
        nxt = pick(logits[:, -1], sub)
        return (nxt, cache, key), nxt

    (last, _, key), toks = jax.lax.scan(cached_step, (first, cache, key), Tc + jnp.arange(n_cached))
    out = jnp.concatenate([first[:, None], toks.T], axis=1)  # (B, 1 + n_cached)

    n_window = max_new_tokens - 1 - n_cached
    if n_window:
        window = jnp.concatenate([ctx, out], axis=1)[:, -T:]  # (B, T): the context a cropped lecture loop sees

        def window_step(carry, _):
            window, key = carry
            logits, _ = decode(window, init_cache(config, B), 0)
            key, sub = jax.random.split(key)
            nxt = pick(logits[:, -1], sub)
            return (jnp.concatenate([window[:, 1:], nxt[:, None]], axis=1), key), nxt

        _, more = jax.lax.scan(window_step, (window, key), None, length=n_window)
        out = jnp.concatenate([out, more.T], axis=1)
    return jnp.concatenate([prompt, out.astype(prompt.dtype)], axis=1)


def generate(params, config: GPTConfig, prompt_tokens, max_new_tokens: int, key: jax.Array, *,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> jax.Array:
    """Sample `max_new_tokens` after each row of `prompt_tokens` (B, T); returns (B, T + max_new_tokens)."""
    prompt = jnp.asarray(prompt_tokens, jnp.int32)
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ValueError(f"prompt_tokens must have shape (B, T) with T >= 1, got {prompt.shape}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens {max_new_tokens} must be >= 1")
    if temperature < 0:
        raise ValueError(f"temperature {temperature} must be >= 0 (0 is greedy)")
    if top_k is not None and not 1 <= top_k <= config.vocab_size:
        raise ValueError(f"top_k {top_k} must be in 1..{config.vocab_size}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p {top_p} must be in (0, 1]")
    return _generate(params, prompt, key, config, max_new_tokens, float(temperature), top_k, top_p)
