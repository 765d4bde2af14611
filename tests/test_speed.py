"""The speed switches change how the model runs, never what it computes (bf16: within a stated tolerance)."""
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import TINY, TINY_TRAIN, tiny_with
from jaxgpt.data import CharTokenizer
from jaxgpt.model import init_params, loss_fn
from jaxgpt.training import create_state, make_keys, train_steps_jit


@pytest.fixture(scope="module")
def batch():
    k1, k2 = jax.random.split(make_keys(3)["train"])
    x = jax.random.randint(k1, (4, TINY.block_size), 0, TINY.vocab_size)
    y = jax.random.randint(k2, (4, TINY.block_size), 0, TINY.vocab_size)
    return x, y


def _loss_and_grads(mc, params, x, y, dropout_key):
    return jax.jit(jax.value_and_grad(loss_fn), static_argnums=1)(params, mc, x, y, dropout_key)


@pytest.mark.parametrize("switch", [dict(scan_layers=False), dict(remat=True), dict(remat=True, scan_layers=False)],
                         ids=["unrolled", "remat", "remat-unrolled"])
def test_layer_switches_same_loss_and_grads(batch, switch):
    """scan_layers/remat are views of one parameter layout: same params in, same loss and gradients out,
    with dropout on (each layer's dropout key is split the same way whichever way the layers run)."""
    x, y = batch
    plain = tiny_with(dropout=0.1)
    other = replace(plain, **switch)
    params = init_params(plain, make_keys(0)["init"])
    assert jax.tree.structure(init_params(other, make_keys(0)["init"])) == jax.tree.structure(params)
    key = make_keys(1)["train"]
    loss_a, grads_a = _loss_and_grads(plain, params, x, y, key)
    loss_b, grads_b = _loss_and_grads(other, params, x, y, key)
    np.testing.assert_allclose(loss_b, loss_a, rtol=1e-5)
    for ga, gb in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)):
        np.testing.assert_allclose(gb, ga, rtol=1e-4, atol=1e-6)


def test_bfloat16_tracks_float32_after_100_steps(small_text):
    """bf16 compute with float32 params, softmax and loss: after 100 AdamW steps the loss is within 0.02."""
    text = small_text.read_text(encoding="utf-8")
    tok = CharTokenizer.from_text(text)
    tokens = tok.encode(text)
    train = jnp.asarray(tokens)
    tc = replace(TINY_TRAIN, max_iters=100, lr_decay_iters=100)
    losses = {}
    for dtype in ("float32", "bfloat16"):
        mc = replace(TINY, vocab_size=tok.vocab_size, dtype=dtype)
        state, metrics = train_steps_jit(create_state(mc, tc), train, mc, tc, 100)
        assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(state.params)), "params must stay float32"
        assert metrics["loss"].dtype == jnp.float32
        losses[dtype] = float(metrics["loss"][-10:].mean())  # the same 10 batches for both: same key, same steps
    f32, bf16 = losses["float32"], losses["bfloat16"]
    assert f32 < 2.9, f"float32 did not learn in 100 steps (loss {f32:.3f}): the comparison would be vacuous"
    assert abs(bf16 - f32) <= 0.02, losses
