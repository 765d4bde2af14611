"""Attention variants: scaling, one head, multi-head, cross-attention, encoder/decoder masks, spatial, reversal."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import TINY
from jaxgpt.attention import (CrossAttention, EncoderBlock, SelfAttention, SpatialSelfAttention, attention_weights,
                              held_out_strings, reversal_accuracy, reversal_batch, reversal_held_out, train_reversal)
from jaxgpt.config import GPTConfig, TrainConfig
from jaxgpt.model import Head, MultiHeadAttention

B, T, C = 2, TINY.block_size, TINY.n_embd


def _init_apply(module, *args):
    """Eager: each module here runs a few times on tiny shapes, cheaper than compiling it."""
    return module.init(jax.random.PRNGKey(0), *args), module.apply


def _x(key=1, shape=(B, T, C)):
    return jax.random.normal(jax.random.PRNGKey(key), shape)


def test_scaling_keeps_unit_variance_scores():
    """The lecture's argument for / sqrt(hs): unit-variance q, k give q.k variance hs, scaled variance 1."""
    hs = 64
    q, k = jax.random.normal(jax.random.PRNGKey(0), (2, 64, 32, 4, hs))  # (B, T, H, hs) each
    unscaled = jnp.einsum("bqhd,bkhd->bhqk", q, k)
    scaled = unscaled * hs ** -0.5
    assert float(unscaled.var()) == pytest.approx(hs, rel=0.05)
    assert float(scaled.var()) == pytest.approx(1.0, rel=0.05)
    # ...and model.attention uses the scaled scores: its weights are softmax(q k / sqrt(hs)) under the causal mask
    mask = jnp.tril(jnp.ones((32, 32), bool))
    expected = jax.nn.softmax(jnp.where(mask, scaled, -jnp.inf), axis=-1)
    np.testing.assert_allclose(attention_weights(q, k), expected, atol=1e-6)
    # unscaled softmax is near one-hot (the lecture's warning): the scaled one is far less peaked
    peak = lambda s: float(jax.nn.softmax(jnp.where(mask, s, -jnp.inf), axis=-1).max(-1).mean())
    assert peak(unscaled) > peak(scaled) + 0.2


def test_single_head_is_causal_and_head_sized():
    head = Head(TINY, head_size=8)
    x = _x()
    params, apply = _init_apply(head, x)
    y = apply(params, x)
    assert y.shape == (B, T, 8)
    x2 = x.at[:, T // 2].add(1.0)  # change one position: earlier outputs stay, that one moves
    y2 = apply(params, x2)
    np.testing.assert_array_equal(y[:, :T // 2], y2[:, :T // 2])
    assert float(jnp.abs(y2[:, T // 2] - y[:, T // 2]).max()) > 1e-4


def test_multi_head_is_heads_in_parallel_then_proj():
    """MultiHeadAttention == each head as a Head (its slice of the fused qkv kernel), concatenated, projected."""
    mha = MultiHeadAttention(TINY)
    x = _x()
    params, _ = _init_apply(mha, x)
    y, _ = mha.apply(params, x)
    p = params["params"]
    heads = [Head(TINY, TINY.head_size).apply({"params": {"qkv": {"kernel": p["qkv"]["kernel"][:, :, h:h + 1]}}}, x)
             for h in range(TINY.n_head)]  # (B, T, hs) each
    concat = jnp.stack(heads, axis=2)  # (B, T, H, hs)
    expected = jnp.einsum("bthd,hdc->btc", concat, p["proj"]["kernel"]) + p["proj"]["bias"]
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_cross_attention_queries_x_and_reads_all_of_the_context():
    ca = CrossAttention(TINY)
    x, ctx = _x(1, (B, 5, C)), _x(2, (B, 11, C))
    params, apply = _init_apply(ca, x, ctx)
    y = apply(params, x, ctx)
    assert y.shape == (B, 5, C)
    y_ctx = apply(params, x, ctx.at[:, -1].add(1.0))  # the last context token: every query sees it (no mask)
    assert float(jnp.abs(y_ctx - y).max(axis=-1).min()) > 1e-5
    y_x = apply(params, x.at[:, 2].add(1.0), ctx)  # one query moves only its own output
    moved = jnp.abs(y_x - y).max(axis=-1)  # (B, 5)
    assert float(moved[:, 2].min()) > 1e-5 and float(jnp.delete(moved, 2, axis=1).max()) == 0.0


def test_encoder_sees_the_future_decoder_does_not():
    x = _x()
    enc, dec = EncoderBlock(TINY), SelfAttention(TINY, causal=True)
    pe, apply_e = _init_apply(enc, x)
    pd, apply_d = _init_apply(dec, x)
    late = x.at[:, -1].add(_x(5, (B, C)))  # not constant over channels: ln1 would remove a constant shift
    assert float(jnp.abs(apply_e(pe, late)[:, 0] - apply_e(pe, x)[:, 0]).max()) > 1e-5
    np.testing.assert_array_equal(apply_d(pd, late)[:, :-1], apply_d(pd, x)[:, :-1])


def test_spatial_attention_is_equivariant_to_moving_pixels():
    """Without positions, self-attention over H*W tokens commutes with any permutation of the pixels."""
    fmap = _x(3, (B, 4, 5, C))  # (B, H, W, C)
    sa = SpatialSelfAttention(TINY)
    params, apply = _init_apply(sa, fmap)
    y = apply(params, fmap)
    assert y.shape == fmap.shape
    perm = jax.random.permutation(jax.random.PRNGKey(4), 20)
    flat = lambda a: a.reshape(B, 20, C)
    y_perm = apply(params, flat(fmap)[:, perm].reshape(fmap.shape))
    np.testing.assert_allclose(flat(y_perm), flat(y)[:, perm], atol=1e-5)


def test_reversal_batches_hold_out_a_fixed_class():
    src, tgt_in, tgt, w = reversal_batch(jax.random.PRNGKey(0), 256, 8, 10)
    np.testing.assert_array_equal(tgt, src[:, ::-1])
    assert (tgt_in[:, 0] == 10).all() and (tgt_in[:, 1:] == tgt[:, :-1]).all()
    held = np.asarray(reversal_held_out(np.asarray(src)))
    assert 0 < held.mean() < 0.3 and (np.asarray(w)[held] == 0).all() and (np.asarray(w)[~held] == 1).all()


def test_encoder_decoder_learns_to_reverse_held_out_strings():
    """Cross-attention end to end: length 8 over 10 symbols, >= 99% exact match, greedy, never-trained strings."""
    c = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=4, n_embd=32, dropout=0.0)
    tc = TrainConfig(batch_size=64, learning_rate=3e-3, decay_lr=True, warmup_iters=20, lr_decay_iters=300,
                     min_lr=1e-4, max_iters=300)
    params, losses = train_reversal(c, tc, jax.random.PRNGKey(0), steps_per_call=300)
    src = held_out_strings(np.random.default_rng(1), 500)
    assert reversal_held_out(src).all() and src.shape == (500, 8)
    acc = reversal_accuracy(params, c, src)
    assert acc >= 0.99, (acc, losses[-5:])
