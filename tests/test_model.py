"""Model properties on tiny configs: shapes, finiteness, causality by gradients, the lecture's parameter count."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import TINY, tiny_with
from jaxgpt import PRESETS, ConfigError, GPTConfig, build_model, count_params, init_params
from jaxgpt.model import Head, MultiHeadAttention, attention

VARIANTS = {
    "gpt": TINY,
    "sinusoidal-nobias-gelu-tied": tiny_with(pos_embedding="sinusoidal", bias=False, activation="gelu",
                                             tie_embeddings=True, scaled_residual_init=True),
    "unrolled-no-ln-no-residual": tiny_with(scan_layers=False, layer_norm=False, residual=False, ffwd=False),
    "no-positions-0-layers": tiny_with(pos_embedding="none", n_layer=0),
    "bigram": tiny_with(model="bigram"),
}


def tokens(config, batch=2, seed=0):
    return jax.random.randint(jax.random.PRNGKey(seed), (batch, config.block_size), 0, config.vocab_size)


@pytest.mark.parametrize("name", VARIANTS)
def test_shapes_and_finite_loss(name):
    c = VARIANTS[name]
    params = init_params(c, jax.random.PRNGKey(0))
    x = tokens(c)
    logits, loss = build_model(c).apply({"params": params}, x, x)
    assert logits.shape == (2, c.block_size, c.vocab_size) and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all() and np.isfinite(float(loss))
    assert abs(float(loss) - np.log(c.vocab_size)) < (1.5 if c.model == "bigram" else 0.2)  # near-uniform start
    _, no_loss = build_model(c).apply({"params": params}, x)
    assert no_loss is None


def _logits_given_embedding_shift(model, params, idx, delta):
    """Logits when `delta` (B, T, C) is added to the token embeddings: inputs we can differentiate."""
    def shift(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.module.name == "token_embedding_table" and context.method_name == "__call__":
            return out + delta
        return out
    with nn.intercept_methods(shift):
        return model.apply({"params": params}, idx)[0]


@pytest.mark.parametrize("name", ["gpt", "sinusoidal-nobias-gelu-tied", "unrolled-no-ln-no-residual"])
def test_causality_by_gradients(name):
    c = VARIANTS[name]
    model, params, idx = build_model(c), init_params(c, jax.random.PRNGKey(1)), tokens(c, batch=1)
    delta = jnp.zeros((1, c.block_size, c.n_embd))
    for t in (0, 5, c.block_size - 1):
        jac = jax.jacrev(lambda d: _logits_given_embedding_shift(model, params, idx, d)[0, t])(delta)  # (V, 1, T, C)
        per_pos = np.abs(np.asarray(jac)).sum(axis=(0, 1, 3))  # (T,)
        assert (per_pos[t + 1:] == 0).all(), f"position {t} depends on the future: {per_pos}"
        assert (per_pos[:t + 1] > 0).all(), f"position {t} ignores its past: {per_pos}"


def test_single_head_is_multi_head_computation_with_one_head():
    c = tiny_with(n_head=1, bias=False)
    x = jax.random.normal(jax.random.PRNGKey(2), (2, c.block_size, c.n_embd))
    head = Head(c, head_size=c.n_embd)
    hp = head.init(jax.random.PRNGKey(3), x)["params"]
    q, k, v = jnp.einsum("btc,cjhd->jbthd", x, hp["qkv"]["kernel"])
    expected = attention(q, k, v, lambda w: w)[:, :, 0]
    np.testing.assert_allclose(np.asarray(head.apply({"params": hp}, x)), np.asarray(expected), rtol=1e-5, atol=1e-6)
    mha = MultiHeadAttention(c)
    mp = mha.init(jax.random.PRNGKey(3), x)["params"]
    mp = {**mp, "qkv": hp["qkv"]}
    y, _ = mha.apply({"params": mp}, x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(jnp.einsum("bth,hc->btc", expected,
                                                                    mp["proj"]["kernel"][0])), rtol=1e-5, atol=1e-6)


def test_lecture_preset_has_the_lecture_parameter_count():
    c = PRESETS["lecture"].model
    shapes = jax.eval_shape(lambda k: init_params(c, k), jax.random.PRNGKey(0))
    assert count_params(shapes) == 10_788_929
    nano = jax.eval_shape(lambda k: init_params(PRESETS["shakespeare-char"].model, k), jax.random.PRNGKey(0))
    # nanoGPT prints "number of parameters: 10.65M" for train_shakespeare_char (it leaves out the position table)
    assert count_params(nano) - 256 * 384 == 10_646_784


def test_parameter_layout_is_the_same_scanned_or_not():
    a = jax.eval_shape(lambda k: init_params(TINY, k), jax.random.PRNGKey(0))
    b = jax.eval_shape(lambda k: init_params(tiny_with(scan_layers=False, remat=True), k), jax.random.PRNGKey(0))
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert jax.tree.map(lambda s: s.shape, a) == jax.tree.map(lambda s: s.shape, b)
    assert a["blocks"]["sa"]["qkv"]["kernel"].shape == (2, 32, 3, 2, 16)  # (L, C, 3, H, hs)


@pytest.mark.parametrize("kw, message", [
    (dict(n_embd=100, n_head=6), "n_embd 100 is not divisible by n_head 6"),
    (dict(pos_embedding="rotary"), "pos_embedding 'rotary' is not one of"),
    (dict(activation="tanh"), "activation 'tanh'"),
    (dict(dropout=1.0), "dropout 1.0"),
    (dict(pos_embedding="sinusoidal", n_embd=33, n_head=1), "even n_embd, got 33"),
    (dict(attn_scale=-0.1), r"attn_scale -0.1 must be >= 0 \(0: 1/sqrt"),
])
def test_invalid_configs_name_their_values(kw, message):
    with pytest.raises(ConfigError, match=message):
        GPTConfig(**kw)
