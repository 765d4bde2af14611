"""The per-token levers (issue 24): U-net skips and value embeddings against a plain-jnp GPT with the wiring written
out by hand, their parameter counts, their optimizer labels, the cached decode path, and the refusals."""
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgpt import optim
from jaxgpt.config import GPTConfig, TrainConfig, apply_overrides
from jaxgpt.decoding import decoder, init_caches
from jaxgpt.errors import ConfigError
from jaxgpt.levers import skip_source, value_table
from jaxgpt.model import build_model, init_cache, init_params
from jaxgpt.params import count_params
from jaxgpt.presets import get_preset
from jaxgpt.training import make_optimizer
from jaxgpt.viz import attention_maps

from conftest import TINY
from test_recipe import random_params
from test_sampling import GREEDY, check_against_naive, params_for

# 5 layers (a middle Block that neither gives nor takes), RMSNorm without biases so the reference stays short
BASE = replace(TINY, n_layer=5, norm="rms", bias=False)
# which Block's output goes into Block i (U-net), and which table Block i adds to its values, written out by hand
SKIPS = {3: 1, 4: 0}
TABLES = {1: {0: 0, 4: 0}, 2: {0: 0, 1: 1, 3: 1, 4: 0}}
BOTH = replace(TINY, unet_skips=True, value_embeds=1)  # for generate; its init is compiled once (params_for)


def plain_forward(c: GPTConfig, p, idx):
    """The GPT forward in plain jnp, the levers wired from SKIPS and TABLES: logits and each layer's attention."""
    B, T = idx.shape
    H, hs, n = c.n_head, c.head_size, c.n_layer
    rms = lambda a, g: a / jnp.sqrt(jnp.mean(a ** 2, -1, keepdims=True) + 1e-5) * g
    x = p["token_embedding_table"]["embedding"][idx] + p["position_embedding_table"]["embedding"][:T]
    outs, maps = [], []
    for i in range(n):
        b = jax.tree.map(lambda a: a[i], p["blocks"])
        if c.unet_skips and i in SKIPS:
            x = x + p["skip_weights"][SKIPS[i]] * outs[SKIPS[i]]
        qkv = jnp.einsum("btc,cjhd->btjhd", rms(x, b["ln1"]["scale"]), b["sa"]["qkv"]["kernel"])
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if i in TABLES.get(c.value_embeds, {}):
            v = v + p["value_embeds"][TABLES[c.value_embeds][i]][idx].reshape(B, T, H, hs)
        wei = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(hs)
        wei = jax.nn.softmax(jnp.where(jnp.tril(jnp.ones((T, T), bool)), wei, -jnp.inf), -1)
        maps.append(wei)
        x = x + jnp.einsum("bhqk,bkhd,hdc->bqc", wei, v, b["sa"]["proj"]["kernel"])
        h = jax.nn.relu(rms(x, b["ln2"]["scale"]) @ b["ffwd"]["fc"]["kernel"])
        x = x + h @ b["ffwd"]["proj"]["kernel"]
        outs.append(x)
    return rms(x, p["ln_f"]["scale"]) @ p["lm_head"]["kernel"], jnp.stack(maps, 1)  # (B, L, H, T, T)


def test_wiring_of_four_layers():
    """The issue's example: Block 0's output goes into Block 3, Block 1's into Block 2; tables mirror."""
    c = replace(TINY, n_layer=4, unet_skips=True, value_embeds=2)
    assert [skip_source(c, i) for i in range(4)] == [None, None, 1, 0]
    assert [value_table(c, i) for i in range(4)] == [0, 1, 1, 0]
    assert [skip_source(replace(c, unet_skips=False), i) for i in range(4)] == [None] * 4
    assert [value_table(replace(c, value_embeds=0), i) for i in range(4)] == [None] * 4
    assert [skip_source(replace(BASE, unet_skips=True), i) for i in range(5)] == [SKIPS.get(i) for i in range(5)]


@pytest.mark.parametrize("unet,k,scan", [(True, 0, True), (False, 1, True), (True, 2, False)])
def test_levers_match_plain_jnp(unet, k, scan):
    c = replace(BASE, unet_skips=unet, value_embeds=k, scan_layers=scan)
    params = random_params(c, seed=1)
    idx = jnp.asarray(np.random.default_rng(0).integers(0, c.vocab_size, (2, c.block_size)), jnp.int32)
    got, _ = jax.jit(build_model(c).apply)({"params": params}, idx)
    want, maps = plain_forward(c, params, idx)
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=2e-4)
    if not scan:  # the attention pictures run the Blocks one by one, levers included
        np.testing.assert_allclose(attention_maps(params, c, idx[0]), maps[0], atol=2e-5)
    # and the levers do something: the same params without them give other logits
    plain = {key: v for key, v in params.items() if key not in ("skip_weights", "value_embeds")}
    assert not np.allclose(got, plain_forward(replace(c, unet_skips=False, value_embeds=0), plain, idx)[0], atol=1e-3)


def test_parameter_counts_and_init():
    count = lambda c: count_params(jax.eval_shape(init_params, c, jax.random.PRNGKey(0)))
    assert count(TINY) == 26507
    assert count(replace(TINY, unet_skips=True)) == 26507 + 1  # n_layer // 2 = 1 scalar
    assert count(replace(TINY, value_embeds=1)) == 26507 + 11 * 32  # one (vocab, n_embd) table
    baby = replace(get_preset("baby").model, vocab_size=65)
    assert count(baby) == 804224  # tests/test_recipe.py's pin: the switches leave the default untouched
    assert count(replace(baby, unet_skips=True)) == 804224 + 2
    assert count(replace(baby, value_embeds=2)) == 804224 + 2 * 65 * 128
    params = params_for(BOTH)
    np.testing.assert_array_equal(params["skip_weights"], np.ones(1))  # modded-nanogpt's init
    assert params["value_embeds"].shape == (1, 11, 32) and 0.01 < float(params["value_embeds"].std()) < 0.03


def test_new_leaves_go_to_adam():
    c = replace(BASE, unet_skips=True, value_embeds=2)
    shapes = jax.eval_shape(init_params, c, jax.random.PRNGKey(0))
    labels = optim.labels(shapes)
    assert labels["skip_weights"] == "adamw" and labels["value_embeds"] == "adamw"
    assert labels["blocks"]["sa"]["qkv"]["kernel"] == "muon"
    jax.eval_shape(make_optimizer(c, replace(TrainConfig(), optimizer="muon", weight_decay=0.1)).init, shapes)


def test_cached_decode_equals_the_full_forward():
    """Both decode paths (the scanned `decode` and decoding.decoder's loop), a 5-token prompt then 3 single tokens,
    against the full forward: the value embeddings need each fed token's id, the skips each layer's output."""
    c = replace(BASE, unet_skips=True, value_embeds=2)
    params = random_params(c, seed=2)
    idx = jnp.asarray(np.random.default_rng(1).integers(0, c.vocab_size, (2, 8)), jnp.int32)
    model = build_model(c)
    want, _ = model.apply({"params": params}, idx)
    loop = jax.jit(lambda i, cache, pos: decoder(params, c)(i, cache, pos))
    scanned = jax.jit(lambda i, cache, pos: model.apply({"params": params}, i, cache, pos, method="decode"))
    for decode, cache in ((loop, init_caches(c, 2)), (scanned, init_cache(c, 2))):
        got, cache = decode(idx[:, :5], cache, 0)
        steps = [got]
        for pos in range(5, 8):
            got, cache = decode(idx[:, pos:pos + 1], cache, pos)
            steps.append(got)
        np.testing.assert_allclose(jnp.concatenate(steps, 1), want, atol=2e-4, rtol=2e-4)


def test_generate_with_both_levers_equals_crop_and_recompute():
    check_against_naive(BOTH, 2, 3, TINY.block_size - 2, strategies=(GREEDY,))  # 3 + 14 crosses block_size


@pytest.mark.parametrize("kw,words", [
    (dict(n_layer=3, value_embeds=2), "value_embeds 2 needs 2 x 2 <= n_layer, got n_layer 3"),
    (dict(value_embeds=-1), "value_embeds"),
    (dict(model="bigram", n_layer=0, value_embeds=1), "need model 'gpt'"),
    (dict(model="bigram", unet_skips=True), "need model 'gpt'"),
    (dict(n_layer=1, unet_skips=True), "unet_skips needs n_layer >= 2"),
])
def test_refusals(kw, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        replace(TINY, **kw)


def test_set_strings_for_baby():
    baby = get_preset("baby")
    model, _ = apply_overrides(baby.model, baby.train, ["unet_skips=true", "value_embeds=2"])
    assert (model.unet_skips, model.value_embeds) == (True, 2)
    with pytest.raises(ConfigError, match="value_embeds 3 needs 2 x 3 <= n_layer, got n_layer 4"):
        apply_overrides(baby.model, baby.train, ["value_embeds=3"])
