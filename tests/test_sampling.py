"""Sampling: the compiled `generate` equals the lecture's crop-and-recompute loop token for token.

Compiles dominate this file's time (about 2 s of CPU per distinct generate program), so cases reuse shapes:
the strategy is a traced argument, so greedy, temperature, top-k and top-p share one program per shape.
"""
import functools
import itertools
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgpt.config import GPTConfig
from jaxgpt.model import build_model, init_params
from jaxgpt.sampling import beam_search, generate, generate_stream, pick_token

from conftest import TINY

# a second GPT: other block size and width, sinusoidal positions, tied head, GELU, no biases
OTHER = GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=3, n_embd=24, dropout=0.0,
                  pos_embedding="sinusoidal", tie_embeddings=True, activation="gelu", bias=False)
BIGRAM = replace(TINY, model="bigram", n_layer=0, block_size=8)
SAMPLE = dict(temperature=0.8, top_k=5, top_p=0.9)
GREEDY = dict(temperature=0.0)


@functools.lru_cache(maxsize=None)
def params_for(config):
    return jax.jit(init_params, static_argnums=0)(config, jax.random.PRNGKey(3))  # jitted: eager init is ~6 s


@functools.lru_cache(maxsize=None)
def _last_logits(config):
    """Logits at position L-1 of the lecture's forward over a right-padded block_size window: by causality the
    same as over the unpadded context, and one compiled program for every context length."""
    model = build_model(config)
    return jax.jit(lambda params, buf, L: model.apply({"params": params}, buf)[0][:, L - 1])


@functools.lru_cache(maxsize=None)
def _naive_pick(config):
    return jax.jit(lambda params, buf, L, key, t, k, p: pick_token(_last_logits(config)(params, buf, L), key, t, k, p))


def _window(config, idx):
    ctx = idx[:, -config.block_size:]  # the lecture's idx[:, -block_size:]
    return np.pad(ctx, ((0, 0), (0, config.block_size - ctx.shape[1]))), ctx.shape[1]


def naive_generate(config, prompt, max_new_tokens, key, temperature=1.0, top_k=None, top_p=None):
    """The lecture's loop: crop, full forward, pick from the last logits; keys split in generate's order."""
    params, idx = params_for(config), np.asarray(prompt, np.int32)
    t, k, p = temperature, config.vocab_size if top_k is None else top_k, 2.0 if top_p is None else top_p
    for _ in range(max_new_tokens):
        key, sub = jax.random.split(key)
        nxt = _naive_pick(config)(params, *_window(config, idx), sub, t, k, p)
        idx = np.concatenate([idx, np.asarray(nxt, np.int32)[:, None]], axis=1)
    return idx


def prompt_of(config, B, T, seed=0):
    return np.random.default_rng(seed).integers(0, config.vocab_size, (B, T)).astype(np.int32)


def check_against_naive(config, B, T, N, strategies=(GREEDY, SAMPLE), seed=0):
    prompt, key = prompt_of(config, B, T, seed), jax.random.PRNGKey(seed)
    for kw in strategies:
        got = np.asarray(generate(params_for(config), config, prompt, N, key, **kw))
        assert got.shape == (B, T + N) and got.dtype == np.int32
        np.testing.assert_array_equal(got[:, :T], prompt)
        np.testing.assert_array_equal(got, naive_generate(config, prompt, N, key, **kw), err_msg=f"{kw}")


# (prompt length, new tokens): prompt + new = block_size - 1, block_size, block_size + 1; prompts equal to and
# longer than block_size (their first step already crops)
@pytest.mark.parametrize("T,N", [(1, TINY.block_size - 2), (1, TINY.block_size - 1), (1, TINY.block_size),
                                 (TINY.block_size, 4), (TINY.block_size + 5, 4)])
def test_generate_matches_lecture_loop_at_the_cache_boundary(T, N):
    check_against_naive(TINY, 2, T, N)


@pytest.mark.parametrize("config,T,N", [(OTHER, 2, 3 * OTHER.block_size), (OTHER, OTHER.block_size, 3),
                                        (OTHER, OTHER.block_size + 3, 3), (BIGRAM, 2, 20), (BIGRAM, 11, 3)])
def test_generate_matches_lecture_loop_other_models(config, T, N):
    check_against_naive(config, 2, T, N)


def test_seed_example_500_characters_from_one_token():
    """The lecture's generate(zeros((1, 1)), 500), two rows at once: far past block_size, every step after the
    first 15 crops."""
    prompt, key = np.zeros((2, 1), np.int32), jax.random.PRNGKey(0)
    for kw in (GREEDY, dict(temperature=1.0)):
        got = np.asarray(generate(params_for(TINY), TINY, prompt, 500, key, **kw))
        np.testing.assert_array_equal(got, naive_generate(TINY, prompt, 500, key, **kw), err_msg=f"{kw}")
    assert (got[0] != got[1]).any()  # rows draw independently


def test_stream_chunks_join_to_generate():
    # chunk 15 from a 1-token prompt: the first chunk fills the cache, the second crosses into window recompute
    prompt, key, N = prompt_of(TINY, 2, 1), jax.random.PRNGKey(1), 45
    for kw in (SAMPLE, GREEDY):
        chunks = [np.asarray(c) for c in generate_stream(params_for(TINY), TINY, prompt, N, key, chunk_size=15,
                                                         **kw)]
        assert [c.shape for c in chunks] == [(2, 15)] * 3
        np.testing.assert_array_equal(np.concatenate(chunks, axis=1),
                                      np.asarray(generate(params_for(TINY), TINY, prompt, N, key, **kw))[:, 1:])


def test_seeds_and_strategies_that_reduce_to_greedy():
    params, prompt, N = params_for(TINY), prompt_of(TINY, 2, 1), TINY.block_size
    run = lambda seed, **kw: np.asarray(generate(params, TINY, prompt, N, jax.random.PRNGKey(seed), **kw))
    assert (run(5) == run(5)).all()
    assert (run(5) != run(6)).any()
    assert (run(5, **SAMPLE) != run(6, **SAMPLE)).any()
    greedy = run(5, temperature=0.0)
    assert (greedy == run(6, temperature=0.0)).all()  # greedy ignores the key
    for kw in (dict(top_k=1), dict(top_p=1e-6), dict(temperature=2.0, top_k=1), dict(top_k=3, top_p=1e-6)):
        np.testing.assert_array_equal(run(7, **kw), greedy, err_msg=f"{kw}")


def test_pick_token_keeps_only_the_allowed_tokens():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]] * 4000))  # (B, V), each row its own draw
    draws = lambda **kw: np.asarray(pick_token(logits, jax.random.PRNGKey(0), **kw))
    assert set(draws(top_k=2)) == {0, 1}
    assert set(draws(top_p=0.7)) == {0, 1}  # 0.5 < 0.7 <= 0.8
    assert set(draws(top_p=0.5)) == {0}
    assert set(draws(top_k=3, top_p=0.99)) == {0, 1, 2}
    freq = np.bincount(draws(), minlength=4) / 4000
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=0.03)
    cold = np.bincount(draws(temperature=0.25), minlength=4) / 4000  # p ** 4, renormalised: 0.87, 0.11, ...
    assert cold[0] > 0.8


def test_beam_width_one_is_greedy_past_block_size():
    prompt = np.zeros((1, 1), np.int32)
    seqs, logprobs = beam_search(params_for(TINY), TINY, prompt, 500, beam_width=1)
    greedy = generate(params_for(TINY), TINY, np.repeat(prompt, 2, 0), 500, jax.random.PRNGKey(0),
                      temperature=0.0)[:1]  # rows of a greedy batch are alike; (2, 1) shares the program above
    assert seqs.shape == (1, 501) and seqs.dtype == jnp.int32 and logprobs.shape == (1,)
    np.testing.assert_array_equal(seqs, greedy)
    assert logprobs.dtype == jnp.float32 and -500 * np.log(TINY.vocab_size) < float(logprobs[0]) < 0


def test_beam_search_equals_brute_force_when_the_beam_holds_every_prefix():
    """V = 11, L = 3 new tokens, W = V^(L-1) = 121: beam search must return exactly the 121 most probable of the
    1331 continuations. The prompt ends one short of block_size, so the last step already crops."""
    config, L = replace(TINY, init_std=0.3), 3  # peakier than the default init: no near-ties at the cut
    V, W = config.vocab_size, config.vocab_size ** (L - 1)
    prompt = prompt_of(config, 1, config.block_size - 1, seed=4)
    seqs, logprobs = beam_search(params_for(config), config, prompt, L, beam_width=W)
    assert seqs.shape == (W, prompt.shape[1] + L) and logprobs.shape == (W,)

    cands = np.array(list(itertools.product(range(V), repeat=L)), np.int32)  # (V^L, L)
    idx = np.concatenate([np.repeat(prompt, len(cands), axis=0), cands], axis=1)
    total = np.zeros(len(cands))
    for j in range(L):
        logits = _last_logits(config)(params_for(config), *_window(config, idx[:, :prompt.shape[1] + j]))
        total += np.take_along_axis(np.asarray(jax.nn.log_softmax(logits)), cands[:, j:j + 1], 1)[:, 0]
    best = np.argsort(-total, kind="stable")[:W]
    np.testing.assert_allclose(np.asarray(logprobs), total[best], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(seqs)[:, prompt.shape[1]:], cands[best])
    np.testing.assert_array_equal(np.asarray(seqs)[:, :prompt.shape[1]], np.repeat(prompt, W, axis=0))
    assert (np.diff(np.asarray(logprobs)) <= 0).all()


@pytest.mark.parametrize("call,match", [
    (lambda p: generate(p, TINY, np.zeros((2,), np.int32), 5, jax.random.PRNGKey(0)), "shape"),
    (lambda p: generate(p, TINY, np.zeros((1, 0), np.int32), 5, jax.random.PRNGKey(0)), "shape"),
    (lambda p: generate(p, TINY, np.zeros((1, 1), np.int32), 0, jax.random.PRNGKey(0)), "max_new_tokens 0"),
    (lambda p: generate(p, TINY, np.zeros((1, 1), np.int32), 5, jax.random.PRNGKey(0), temperature=-1),
     "temperature -1"),
    (lambda p: generate(p, TINY, np.zeros((1, 1), np.int32), 5, jax.random.PRNGKey(0), top_k=12), "top_k 12"),
    (lambda p: generate(p, TINY, np.zeros((1, 1), np.int32), 5, jax.random.PRNGKey(0), top_p=0.0), "top_p 0.0"),
    (lambda p: generate_stream(p, TINY, np.zeros((1, 1), np.int32), 5, jax.random.PRNGKey(0), chunk_size=0),
     "chunk_size 0"),
    (lambda p: beam_search(p, TINY, np.zeros((2, 1), np.int32), 5, beam_width=2), r"\(2, 1\)"),
    (lambda p: beam_search(p, TINY, np.zeros((1, 1), np.int32), 5, beam_width=0), "beam_width 0"),
])
def test_bad_arguments_name_the_value(call, match):
    with pytest.raises(ValueError, match=match):
        call(params_for(TINY))
