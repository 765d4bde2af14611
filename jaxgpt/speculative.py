"""Speculative sampling (Leviathan et al. 2023; Chen et al. 2023) at batch 1: a cheap draft proposes k tokens, the GPT
scores all of them in one cached forward of k + 1 positions, and an accept/resample rule keeps the output
distribution exactly the GPT's.

One round, with p the GPT's and q the draft's next-token distributions, both after temperature / top-k / top-p
(`sampling.token_probs`, so the rule samples what `generate` samples):
1. the draft samples d_1..d_k, d_i ~ q_i (q_i conditioned on the text so far and d_<i);
2. the GPT feeds [last, d_1..d_k] at positions pos..pos+k through its cache: p_1..p_{k+1};
3. d_i is accepted with probability min(1, p_i(d_i) / q_i(d_i)), in order; at the first rejection the token is
   drawn from the normalised residual max(0, p_i - q_i); if all k are accepted one more is drawn from p_{k+1}.
Each round yields 1..k+1 tokens. Rejected positions leave stale keys/values in the cache slots after the accepted
ones; the next round overwrites them before any query can see them (the causal mask stops at the query's position).

Greedy (temperature 0) makes p and q one-hot, so the rule keeps the draft's tokens while they are the GPT's argmax
and then takes the GPT's argmax: the text equals greedy `generate`'s except where a k-position forward rounds a near
tie differently from single steps. Past block_size the lecture's crop shifts every position (docs/sampling.md), so
the remaining tokens come from the exact cached and window steps of `sampling`. Batch 1 only: rows would accept
different counts, and the draft runs on the host.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .config import GPTConfig
from .errors import ConfigError, UsageError
from .decoding import init_caches
from .model import build_model
from .ngram import NGramModel
from .sampling import _check, _decoder, _sample_more, _strategy, token_probs


class NGramDraft:
    """A count model (`jaxgpt.ngram`) as a draft: its log-probabilities of the next token are the draft's logits."""

    def __init__(self, model: NGramModel):
        self.model, self.vocab_size = model, model.V
        # next_probs reads only the last n - 1 tokens; text repeats them often, and one 7-gram lookup is ~0.3 ms
        self._logits = functools.lru_cache(maxsize=1 << 16)(
            lambda ctx: np.log(model.next_probs(list(ctx))).astype(np.float32))

    def next_logits(self, context: list[int]) -> np.ndarray:
        return self._logits(tuple(context[len(context) - (self.model.n - 1):] if self.model.n > 1 else ()))  # (V,)


class GPTDraft:
    """A (small) GPT as a draft: one compiled forward over its right-padded last block_size tokens per proposal."""

    def __init__(self, params, config: GPTConfig):
        self.params, self.config, self.vocab_size = params, config, config.vocab_size
        model = build_model(config)
        self._last = jax.jit(lambda params, buf, L: model.apply({"params": params}, buf)[0][0, L - 1])

    def next_logits(self, context: list[int]) -> jax.Array:
        ctx = np.asarray(context[-self.config.block_size:], np.int32)
        buf = np.zeros((1, self.config.block_size), np.int32)
        buf[0, :len(ctx)] = ctx  # causal: the padding after position L-1 changes nothing before it
        return self._last(self.params, buf, len(ctx))  # (V,)


@dataclass
class SpecStats:
    rounds: int = 0     # verify calls (each one k + 1 position forward of the GPT)
    drafted: int = 0    # tokens the draft proposed
    accepted: int = 0   # of those, accepted
    fallback: int = 0   # tokens sampled past the speculative part (cache end), by the exact steps

    @property
    def acceptance(self) -> float:
        return self.accepted / max(self.drafted, 1)


def _accepts(u: jax.Array, p_d: jax.Array, q_d: jax.Array) -> jax.Array:
    """Accept d_i iff u_i < p_i(d_i) / q_i(d_i), u_i ~ U[0, 1): probability min(1, p/q) (q_d > 0: d_i ~ q)."""
    return u * q_d < p_d


@jax.jit
def _draft_pick(logits, key, round_, j, strategy):
    """The draft's j-th token of a round and its distribution q after the strategy: (), (V,)."""
    q = token_probs(logits[None], *strategy)[0]  # (V,)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(key, round_), 0), j)
    return jax.random.categorical(key, jnp.log(q)).astype(jnp.int32), q


@functools.partial(jax.jit, static_argnames=("config",), donate_argnums=(1,))
def _verify(params, cache, toks, pos, qs, key, round_, strategy, config: GPTConfig):
    """toks (1, k+1) = [last, d_1..d_k] fed at positions pos..pos+k, qs k arrays (V,): ([n accepted, next token],
    cache)."""
    decode, _ = _decoder(params, config)
    q = jnp.stack(qs)  # (k, V)
    logits, cache = decode(toks, cache, pos)  # (1, k+1, V)
    p = token_probs(logits[0], *strategy)  # (k+1, V)
    k, drafts = q.shape[0], toks[0, 1:]
    key_u, key_r = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, round_), 1))
    ok = _accepts(jax.random.uniform(key_u, (k,)), p[jnp.arange(k), drafts], q[jnp.arange(k), drafts])
    n = jnp.sum(jnp.cumprod(ok.astype(jnp.int32)))  # accepted before the first rejection
    q_n = jnp.where(n < k, q[jnp.minimum(n, k - 1)], 0.0)  # all accepted: the extra token comes from p_{k+1}
    residual = jnp.maximum(p[n] - q_n, 0.0)
    residual = jnp.where(residual.sum() > 0, residual, p[n])  # p_n == q_n (a rejection then has probability 0)
    nxt = jax.random.categorical(key_r, jnp.log(residual / residual.sum())).astype(jnp.int32)
    return jnp.stack([n, nxt]), cache


@functools.partial(jax.jit, static_argnames=("config",))
def _prefill(params, ctx, config: GPTConfig):
    decode, _ = _decoder(params, config)
    return decode(ctx, init_caches(config, 1), 0)[1]


def _exact_rest(params, config: GPTConfig, seq: list[int], cache, n: int, key, strategy) -> list[int]:
    """`n` tokens after seq (its last token pending at position len(seq) - 1 < block_size, the others in `cache`) by
    `sampling`'s exact steps, one per call (two compiled programs whatever the counts; a window step is a whole
    block_size forward, so the call costs little beside it)."""
    pos = len(seq) - 1
    buf = np.zeros((1, config.block_size), np.int32)
    buf[0, :pos] = seq[:pos]
    tok, state, out = jnp.asarray([seq[-1]], jnp.int32), (jnp.asarray(buf), cache), []
    for j in range(n):
        cached = pos + j <= config.block_size - 1
        tok, state, key, new = _sample_more(params, tok, state, key, jnp.int32(pos + j), strategy, config,
                                            int(cached), int(not cached))
        out.append(int(new[0, 0]))
    return out


def speculative_generate(params, config: GPTConfig, prompt_tokens, max_new_tokens: int, key: jax.Array, draft, *,
                         k: int = 4, temperature: float = 1.0, top_k: int | None = None,
                         top_p: float | None = None) -> tuple[np.ndarray, SpecStats]:
    """`generate` for one prompt (1, T) with a draft (`NGramDraft`, `GPTDraft`, or any object with `vocab_size`
    and `next_logits(context) -> (V,)`): the same distribution of texts, fewer GPT steps when the draft agrees.

    Returns (tokens (1, T + max_new_tokens) int32, SpecStats). The same key gives the same text.
    """
    prompt, ctx = _check(config, prompt_tokens, max_new_tokens)
    if prompt.shape[0] != 1:
        raise UsageError(f"speculative sampling takes one prompt of shape (1, T), got {prompt.shape}")
    if draft.vocab_size != config.vocab_size:
        raise ConfigError(f"the draft's vocabulary has {draft.vocab_size} tokens, the model's {config.vocab_size}: "
                          f"a draft must share the model's vocabulary")
    if config.model != "gpt" or config.n_layer == 0:
        raise ConfigError(f"speculative sampling needs a GPT with a cache, got model {config.model!r} with "
                          f"n_layer {config.n_layer}")
    if not 1 <= k < config.block_size:
        raise UsageError(f"k {k} must be in 1..{config.block_size - 1} (block_size - 1)")
    strategy = _strategy(config, temperature, top_k, top_p)
    seq, stats = np.asarray(ctx[0]).tolist(), SpecStats()  # positions 0..; the last token is pending
    cache = _prefill(params, ctx[:, :-1], config) if len(seq) > 1 else init_caches(config, 1)
    n_new = 0
    while n_new < max_new_tokens and len(seq) - 1 + k <= config.block_size - 1:
        drafts, qs = [], []  # keys: fold_in(key, round) then 0 (draft token j) or 1 (verify)
        for j in range(k):
            tok, q = _draft_pick(draft.next_logits(seq + drafts), key, stats.rounds, j, strategy)
            drafts.append(int(tok))
            qs.append(q)
        picked, cache = _verify(params, cache, np.asarray([seq[-1:] + drafts], np.int32), len(seq) - 1, tuple(qs),
                                key, stats.rounds, strategy, config)
        n, nxt = np.asarray(picked).tolist()
        seq += drafts[:n] + [nxt]
        n_new += n + 1
        stats.rounds, stats.drafted, stats.accepted = stats.rounds + 1, stats.drafted + k, stats.accepted + n
    new = seq[len(seq) - n_new:][:max_new_tokens]
    if n_new < max_new_tokens:
        stats.fallback = max_new_tokens - n_new
        new += _exact_rest(params, config, seq, cache, stats.fallback,
                           jax.random.fold_in(key, stats.rounds), strategy)  # a key no round used
    return np.concatenate([np.asarray(prompt), np.asarray([new], np.int32)], axis=1), stats
