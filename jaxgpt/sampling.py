"""Sampling as one compiled program: `generate`, `generate_stream`, `beam_search` and the token pickers.

The prompt (cropped to its last block_size tokens, as the lecture does) is prefilled into a per-layer key/value
cache of block_size slots; then `lax.scan` feeds one token per step at the next position, the RNG key carried and
split in the scan. Once the context would pass block_size, the lecture crops to the last block_size tokens, which
shifts every position and so (with absolute positions) every layer's keys and values: from then on each step
recomputes the whole block_size window. That is exactly what cropping gives, at one full forward pass per token
(see docs/sampling.md for the measured cost).

Step bookkeeping shared by every entry point: new token 0 is picked from the prefill's logits; step j >= 1 feeds
new token j-1 at absolute position Tc + j - 1 (Tc = cropped prompt length) and picks new token j. Step j fits the
cache iff Tc + j - 1 <= block_size - 1; `_split` counts those steps statically, so `decode` (whose
`lax.dynamic_update_slice` clamps silently) is never asked to write past its last slot.
"""
from __future__ import annotations

import functools
from typing import Iterator

import jax
import jax.numpy as jnp

from .config import GPTConfig
from .decoding import decoder, init_caches
from .model import build_model
from .params import Params

Strategy = tuple  # (temperature f32, top_k i32, top_p f32) arrays, traced under jit


def filter_logits(logits: jax.Array, temperature=1.0, top_k=None, top_p=None) -> jax.Array:
    """softmax(logits / temperature) restricted to the top_k most likely and/or the smallest set whose probability
    reaches top_p (nucleus, after top_k), as logits: -inf outside the kept set. (B, V) -> (B, V)

    The settings may be Python numbers or traced scalars (None = off), so one compiled program serves every
    strategy. Ties at the cut-off are kept, so a few more than k tokens may survive on exact ties.
    """
    V = logits.shape[-1]
    temperature = jnp.asarray(temperature, jnp.float32)
    k = jnp.asarray(V if top_k is None else top_k, jnp.int32)
    p = jnp.asarray(2.0 if top_p is None else top_p, jnp.float32)  # > 1 keeps everything
    scaled = logits / jnp.where(temperature > 0, temperature, 1.0)  # (B, V)
    sorted_logits = -jnp.sort(-scaled, axis=-1)  # (B, V), most likely first
    sorted_logits = jnp.where(jnp.arange(V) < k, sorted_logits, -jnp.inf)  # top_k
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly more likely tokens; 0 for the first
    kept = (jnp.arange(V) < k) & (before < p)
    cutoff = jnp.min(jnp.where(kept, sorted_logits, jnp.inf), axis=-1, keepdims=True)  # (B, 1)
    return jnp.where(scaled < cutoff, -jnp.inf, scaled)


def pick_token(logits: jax.Array, key: jax.Array, temperature=1.0, top_k=None, top_p=None) -> jax.Array:
    """Next token from (B, V) logits: greedy at temperature 0, else a draw from `filter_logits`'s distribution."""
    sampled = jax.random.categorical(key, filter_logits(logits, temperature, top_k, top_p), axis=-1)
    return jnp.where(jnp.asarray(temperature) > 0, sampled, jnp.argmax(logits, axis=-1))


def token_probs(logits: jax.Array, temperature=1.0, top_k=None, top_p=None) -> jax.Array:
    """The distribution `pick_token` draws from, (B, V) float32: one-hot on the argmax at temperature 0."""
    probs = jax.nn.softmax(filter_logits(logits, temperature, top_k, top_p), axis=-1)
    onehot = jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1], dtype=probs.dtype)
    return jnp.where(jnp.asarray(temperature) > 0, probs, onehot)


def _strategy(config: GPTConfig, temperature, top_k, top_p) -> tuple:
    """Checked settings as arrays: jit arguments, not static ones, so changing them never recompiles."""
    if temperature < 0:
        raise ValueError(f"temperature {temperature} must be >= 0 (0 is greedy)")
    if top_k is not None and not 1 <= top_k <= config.vocab_size:
        raise ValueError(f"top_k {top_k} must be in 1..{config.vocab_size}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p {top_p} must be in (0, 1]")
    return (jnp.float32(temperature), jnp.int32(config.vocab_size if top_k is None else top_k),
            jnp.float32(2.0 if top_p is None else top_p))


def _split(config: GPTConfig, Tc: int, first_step: int, n: int) -> tuple[int, int]:
    """(cached, window) counts of steps first_step..first_step+n-1; cached ones feed positions <= block_size-1."""
    n_cached = min(n, max(0, config.block_size - Tc - first_step + 1))
    last_pos = Tc + first_step - 1 + n_cached - 1  # position of the last cached feed
    assert n_cached == 0 or last_pos <= config.block_size - 1, (Tc, first_step, n, n_cached)
    return n_cached, n - n_cached


def _decoder(params, config: GPTConfig):
    model = build_model(config)
    decode = decoder(params, config)  # per-layer weights and caches (jaxgpt/decoding.py)
    full = lambda idx: model.apply({"params": params}, idx)[0]  # the lecture's forward, no cache
    return decode, full


def _prefill(params, config: GPTConfig, ctx: jax.Array, batch: int = 1):
    """Logits after ctx (B, Tc) and the state (buf, cache) the steps continue from; rows repeated `batch` times."""
    decode, _ = _decoder(params, config)
    B, Tc = ctx.shape
    logits, cache = decode(ctx, init_caches(config, B), 0)  # (B, Tc, V)
    buf = jnp.zeros((B, config.block_size), jnp.int32).at[:, :Tc].set(ctx)  # the last block_size tokens fed
    if batch > 1:
        buf, logits = jnp.repeat(buf, batch, axis=0), jnp.repeat(logits, batch, axis=0)
        cache = jax.tree.map(lambda c: jnp.repeat(c, batch, axis=0), cache)  # per layer (B, H, T, hs)
    return logits[:, -1], (buf, cache)


def _run_steps(params, config: GPTConfig, tok, state, carry, pos0, n_cached: int, n_window: int, choose):
    """Feed `tok` (B,) and choose the next token, n_cached times through the cache then n_window times by full
    window recompute. `choose(logits, carry) -> (tok, carry, out, reorder)`; `reorder` (B,) or None regathers the
    rows of the state (beam search). Returns (tok, state, carry, outs (n, ...))."""
    decode, full = _decoder(params, config)

    def cached_step(c, pos):
        tok, buf, cache, carry = c
        buf = jax.lax.dynamic_update_slice(buf, tok[:, None].astype(buf.dtype), (0, pos))
        logits, cache = decode(tok[:, None], cache, pos)  # (B, 1, V)
        tok, carry, out, reorder = choose(logits[:, -1], carry)
        if reorder is not None:
            buf, cache = buf[reorder], jax.tree.map(lambda a: a[reorder], cache)
        return (tok, buf, cache, carry), out

    def window_step(c, _):  # the cache is stale here (every position shifted): not carried
        tok, buf, carry = c
        buf = jnp.concatenate([buf[:, 1:], tok[:, None].astype(buf.dtype)], axis=1)  # idx[:, -block_size:]
        logits = full(buf)  # (B, T, V)
        tok, carry, out, reorder = choose(logits[:, -1], carry)
        return (tok, buf if reorder is None else buf[reorder], carry), out

    (buf, cache), outs = state, []
    if n_cached:
        (tok, buf, cache, carry), out = jax.lax.scan(cached_step, (tok, buf, cache, carry),
                                                     pos0 + jnp.arange(n_cached, dtype=jnp.int32))
        outs.append(out)
    if n_window:
        (tok, buf, carry), out = jax.lax.scan(window_step, (tok, buf, carry), None, length=n_window)
        outs.append(out)
    outs = jax.tree.map(lambda *a: jnp.concatenate(a), *outs) if outs else None
    return tok, (buf, cache), carry, outs


def _sampler(strategy: Strategy):
    pick = functools.partial(pick_token, temperature=strategy[0], top_k=strategy[1], top_p=strategy[2])

    def choose(logits, key):
        key, sub = jax.random.split(key)
        tok = pick(logits, sub).astype(jnp.int32)
        return tok, key, tok, None
    return choose


@functools.partial(jax.jit, static_argnames=("config", "n_steps"))
def _sample_first(params, ctx, key, strategy: Strategy, config: GPTConfig, n_steps: int):
    """Prefill, pick new token 0, then steps 1..n_steps; returns (tok, state, key, new tokens (B, 1 + n_steps))."""
    choose = _sampler(strategy)
    logits, state = _prefill(params, config, ctx)
    tok, key, first, _ = choose(logits, key)
    n_cached, n_window = _split(config, ctx.shape[1], 1, n_steps)
    tok, state, key, toks = _run_steps(params, config, tok, state, key, jnp.int32(ctx.shape[1]), n_cached,
                                       n_window, choose)
    return tok, state, key, first[:, None] if toks is None else jnp.concatenate([first[:, None], toks.T], axis=1)


@functools.partial(jax.jit, static_argnames=("config", "n_cached", "n_window"), donate_argnums=(2,))
def _sample_more(params, tok, state, key, pos0, strategy: Strategy, config: GPTConfig, n_cached: int,
                 n_window: int):
    """A later chunk of steps: (tok, state, key, new tokens (B, n_cached + n_window))."""
    tok, state, key, toks = _run_steps(params, config, tok, state, key, pos0, n_cached, n_window,
                                       _sampler(strategy))
    return tok, state, key, toks.T


def _check(config: GPTConfig, prompt_tokens, max_new_tokens: int):
    prompt = jnp.asarray(prompt_tokens, jnp.int32)
    if prompt.ndim != 2 or prompt.shape[0] < 1 or prompt.shape[1] < 1:
        raise ValueError(f"prompt_tokens must have shape (B, T) with B, T >= 1, got {prompt.shape}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens {max_new_tokens} must be >= 1")
    return prompt, prompt[:, -config.block_size:]  # the lecture's idx[:, -block_size:]


def generate(params: Params, config: GPTConfig, prompt_tokens: jax.typing.ArrayLike,
             max_new_tokens: int, key: jax.Array, *,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> jax.Array:
    """Sample `max_new_tokens` after each row of `prompt_tokens` (B, T); returns (B, T + max_new_tokens) int32.

    Each token is drawn from softmax(logits / temperature), restricted to the `top_k` most likely and/or the
    smallest set of probability >= `top_p`; temperature 0 is greedy (always the most likely token, key unused).
    One compiled call; token for token what the lecture's crop-and-recompute loop gives with the same picks.
    Example: `generate(params, config, jnp.zeros((1, 1), jnp.int32), 100, jax.random.PRNGKey(0))` -> (1, 101).
    """
    prompt, ctx = _check(config, prompt_tokens, max_new_tokens)
    strategy = _strategy(config, temperature, top_k, top_p)
    *_, new = _sample_first(params, ctx, key, strategy, config, max_new_tokens - 1)
    return jnp.concatenate([prompt, new], axis=1)


def generate_stream(params: Params, config: GPTConfig, prompt_tokens: jax.typing.ArrayLike,
                    max_new_tokens: int, key: jax.Array, *,
                    temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                    chunk_size: int = 32) -> Iterator[jax.Array]:
    """`generate` in chunks: yields (B, n) int32 arrays of new tokens, n <= chunk_size, one compiled call each.

    The token, the last block_size tokens, the cache and the key are carried between calls, so the chunks joined
    equal `generate(...)`'s new tokens for the same key. Arguments are checked here, before the first chunk.
    """
    prompt, ctx = _check(config, prompt_tokens, max_new_tokens)
    if chunk_size < 1:
        raise ValueError(f"chunk_size {chunk_size} must be >= 1")
    strategy = _strategy(config, temperature, top_k, top_p)
    Tc = ctx.shape[1]

    def chunks():
        first = min(chunk_size, max_new_tokens) - 1  # steps in the first call, after the prefill's pick
        tok, state, k, new = _sample_first(params, ctx, key, strategy, config, first)
        yield new
        step = first + 1
        while step < max_new_tokens:
            n = min(chunk_size, max_new_tokens - step)
            n_cached, n_window = _split(config, Tc, step, n)
            tok, state, k, new = _sample_more(params, tok, state, k, jnp.int32(Tc + step - 1), strategy, config,
                                              n_cached, n_window)
            yield new
            step += n
    return chunks()


@functools.partial(jax.jit, static_argnames=("config", "max_new_tokens", "beam_width"))
def _beam_search(params, ctx, config: GPTConfig, max_new_tokens: int, beam_width: int):
    W, V = beam_width, config.vocab_size

    def choose(logits, carry):
        scores, hist, j = carry  # (W,), (W, N), step
        cand = (scores[:, None] + jax.nn.log_softmax(logits, axis=-1)).reshape(-1)  # (W * V,)
        scores, flat = jax.lax.top_k(cand, W)  # best first; lower index first on ties
        beam, tok = flat // V, (flat % V).astype(jnp.int32)
        hist = jax.lax.dynamic_update_slice(hist[beam], tok[:, None], (0, j))
        return tok, (scores, hist, j + 1), None, beam

    logits, state = _prefill(params, config, ctx, batch=W)  # (W, V): W copies of the single prompt
    scores = jnp.where(jnp.arange(W) == 0, 0.0, -jnp.inf)  # one live beam until the first pick
    carry = (scores, jnp.zeros((W, max_new_tokens), jnp.int32), jnp.int32(0))
    tok, carry, _, beam = choose(logits, carry)
    state = jax.tree.map(lambda a: a[beam], state)  # the window buffer and every layer's cache
    n_cached, n_window = _split(config, ctx.shape[1], 1, max_new_tokens - 1)
    _, _, (scores, hist, _), _ = _run_steps(params, config, tok, state, carry, jnp.int32(ctx.shape[1]), n_cached,
                                            n_window, choose)
    return hist, scores


def beam_search(params: Params, config: GPTConfig, prompt_tokens: jax.typing.ArrayLike,
                max_new_tokens: int, *, beam_width: int) -> tuple[jax.Array, jax.Array]:
    """The `beam_width` most probable continuations (under cropped contexts, like `generate`) of a (1, T) prompt.

    Returns (sequences (W, T + max_new_tokens) int32, logprobs (W,) float32), best first; logprobs are sums of the
    new tokens' log-probabilities. Rows with logprob -inf exist only when fewer than W continuations exist.
    """
    prompt, ctx = _check(config, prompt_tokens, max_new_tokens)
    if prompt.shape[0] != 1:
        raise ValueError(f"beam_search takes one prompt of shape (1, T), got {prompt.shape}")
    if beam_width < 1:
        raise ValueError(f"beam_width {beam_width} must be >= 1")
    hist, scores = _beam_search(params, ctx, config, max_new_tokens, beam_width)
    return jnp.concatenate([jnp.repeat(prompt, beam_width, axis=0), hist], axis=1), scores
