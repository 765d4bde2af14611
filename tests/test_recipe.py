"""The modern recipe's switches: each piece against plain jnp, RoPE's relative positions and its KV cache, Muon's
leaf assignment on the real preset trees and its singular values, the masks, the wsd schedule, and the defaults."""
import json
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgpt import optim
from jaxgpt.config import GPTConfig, TrainConfig, from_dict, to_dict
from jaxgpt.layers import apply_rope, relu2, rms_norm, soft_cap
from jaxgpt.model import MultiHeadAttention, init_params
from jaxgpt.params import count_params
from jaxgpt.presets import PRESETS, get_preset
from jaxgpt.training import lr_schedule, make_optimizer

from conftest import TINY
from test_sampling import GREEDY, SAMPLE, _last_logits, check_against_naive, params_for

ROPE = replace(TINY, pos_embedding="rope", qk_norm=True, norm="rms", activation="relu2", logit_softcap=3.0)
RNG = np.random.default_rng(0)


def random_params(mc, seed=0):
    """A params tree of mc's shapes with N(0, 0.1) values, without compiling an init."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(init_params, mc, jax.random.PRNGKey(0))
    return jax.tree.map(lambda x: jnp.asarray(rng.normal(0.0, 0.1, x.shape), x.dtype), shapes)


def test_pieces_match_plain_jnp():
    x = jnp.asarray(RNG.normal(size=(2, 3, 8)), jnp.float32)
    np.testing.assert_allclose(rms_norm(x), x / jnp.sqrt(jnp.mean(x ** 2, -1, keepdims=True) + 1e-6), rtol=1e-6)
    np.testing.assert_array_equal(relu2(x), jnp.where(x > 0, x * x, 0.0))
    np.testing.assert_allclose(soft_cap(x * 10, 2.0), 2.0 * jnp.tanh(x * 5), rtol=1e-6)
    np.testing.assert_array_equal(soft_cap(x, 0.0), x)


@pytest.mark.parametrize("attn_scale", [0.0, 0.4])  # 0: 1/sqrt(hs)
def test_qk_norm_attention_matches_plain_jnp(attn_scale):
    c = replace(TINY, qk_norm=True, bias=False, attn_scale=attn_scale)
    x = jnp.asarray(RNG.normal(size=(1, 5, c.n_embd)), jnp.float32)
    mha = MultiHeadAttention(c)
    params = mha.init(jax.random.PRNGKey(1), x)["params"]
    got, _ = mha.apply({"params": params}, x)
    qkv = jnp.einsum("btc,cjhd->btjhd", x, params["qkv"]["kernel"])
    norm = lambda a: a / jnp.sqrt(jnp.mean(a ** 2, -1, keepdims=True) + 1e-6)
    q, k, v = norm(qkv[:, :, 0]), norm(qkv[:, :, 1]), qkv[:, :, 2]
    wei = jnp.einsum("bqhd,bkhd->bhqk", q, k) * (attn_scale if attn_scale else 1 / jnp.sqrt(c.head_size))
    wei = jax.nn.softmax(jnp.where(jnp.tril(jnp.ones((5, 5), bool)), wei, -jnp.inf), -1)
    want = jnp.einsum("bhqk,bkhd,hdc->bqc", wei, v, params["proj"]["kernel"])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_attn_scale_adds_no_parameters_and_a_config_from_before_it_loads():
    baby = PRESETS["baby"]
    n = lambda mc: count_params(jax.eval_shape(lambda k: init_params(mc, k), jax.random.PRNGKey(0)))
    assert n(replace(baby.model, attn_scale=0.25)) == n(baby.model)
    d = json.loads(json.dumps(to_dict(baby.model, baby.train)))  # as config.json and checkpoints hold it
    del d["model"]["attn_scale"]
    assert from_dict(d)[0] == baby.model


def test_rope_scores_depend_on_relative_position_only():
    q, k = (jnp.asarray(RNG.normal(size=(1, 6, 2, 16)), jnp.float32) for _ in range(2))
    scores = lambda start: jnp.einsum("bqhd,bkhd->bhqk", apply_rope(q, start + jnp.arange(6)),
                                      apply_rope(k, start + jnp.arange(6)))
    np.testing.assert_allclose(scores(0), scores(37), atol=1e-4)
    assert not np.allclose(scores(0), jnp.einsum("bqhd,bkhd->bhqk", q, k), atol=1e-2)  # it does rotate


@pytest.mark.parametrize("T,N", [(3, ROPE.block_size), (ROPE.block_size + 2, 5)])  # both cross block_size
def test_generate_with_rope_equals_crop_and_recompute(T, N):
    check_against_naive(ROPE, 2, T, N, strategies=(GREEDY, SAMPLE))


def test_soft_cap_bounds_the_logits():
    params = jax.tree.map(lambda p: 100.0 * p, params_for(ROPE))  # logits far past the cap without it
    logits = _last_logits(ROPE)(params, jnp.asarray(RNG.integers(0, ROPE.vocab_size, (2, 16)), jnp.int32), 16)
    assert 2.9 < float(jnp.abs(logits).max()) <= 3.0  # tanh reaches 1.0 in float32 far out


def _expected_label(key: str) -> str:
    return "muon" if "blocks" in key and key.endswith("'kernel']") and "lora" not in key else "adamw"


@pytest.mark.parametrize("preset", ["baby", "lecture"])
@pytest.mark.parametrize("scan", [True, False])
def test_muon_gets_exactly_the_block_matrices(preset, scan):
    mc = replace(get_preset(preset).model, scan_layers=scan)
    shapes = jax.eval_shape(init_params, mc, jax.random.PRNGKey(0))
    flat = {jax.tree_util.keystr(p): (x, lab) for (p, x), lab in zip(jax.tree_util.tree_flatten_with_path(shapes)[0],
                                                                      jax.tree.leaves(optim.labels(shapes)))}
    assert {k: lab for k, (_, lab) in flat.items()} == {k: _expected_label(k) for k in flat}
    dims = {jax.tree_util.keystr(p): optim.dimension_numbers(p, x)
            for p, x in jax.tree_util.tree_flatten_with_path(shapes)[0]}
    L, C, H, hs = mc.n_layer, mc.n_embd, mc.n_head, mc.head_size
    for key, (rows, cols) in {"['blocks']['sa']['qkv']['kernel']": (C, H * hs), "['blocks']['sa']['proj']['kernel']":
                              (H * hs, C), "['blocks']['ffwd']['fc']['kernel']": (C, 4 * C),
                              "['blocks']['ffwd']['proj']['kernel']": (4 * C, C)}.items():
        x, d = flat[key][0], dims[key]
        assert x.shape[0] == L and 0 not in (*d.reduction_axis, *d.output_axis)  # the layer axis is a batch axis
        assert (np.prod([x.shape[a] for a in d.reduction_axis]), np.prod([x.shape[a] for a in d.output_axis])) == \
               (rows, cols)
    # the optimizer built from it initialises on the whole tree, no leaf left over
    jax.eval_shape(make_optimizer(mc, replace(TrainConfig(), optimizer="muon")).init, shapes)


def _conditioned(shape_in, shape_out, cond, seed):
    """A (in, out) matrix with singular values log-spaced from 1 down to 1 / cond."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(shape_in, shape_in)))
    v, _ = np.linalg.qr(rng.normal(size=(shape_out, shape_out)))
    k = min(shape_in, shape_out)
    return (u[:, :k] * np.logspace(0, -np.log10(cond), k)) @ v[:, :k].T


def test_muon_update_singular_values_lie_in_the_newton_schulz_band():
    mc = TINY
    params = random_params(mc)
    C, H, hs, L = mc.n_embd, mc.n_head, mc.head_size, mc.n_layer
    grads = jax.tree.map(jnp.zeros_like, params)
    fc = np.stack([_conditioned(C, 4 * C, 300.0, i) for i in range(L)])  # (L, C, 4C), condition 300
    q = np.stack([np.stack([_conditioned(C, H * hs, 300.0, 10 * i + j) for j in range(3)], 1) for i in range(L)])
    grads["blocks"]["ffwd"]["fc"]["kernel"] = jnp.asarray(fc, jnp.float32)
    grads["blocks"]["sa"]["qkv"]["kernel"] = jnp.asarray(q.reshape(L, C, 3, H, hs), jnp.float32)
    opt = optim.muon_adamw(1.0, 0.0, optax.adamw(1e-3))  # momentum 0: the update is the orthogonalised gradient
    updates, _ = jax.jit(opt.update)(grads, opt.init(params), params)
    for i in range(L):
        s = np.linalg.svd(-np.asarray(updates["blocks"]["ffwd"]["fc"]["kernel"][i]), compute_uv=False)
        s = s / np.sqrt(4)  # the width factor sqrt(max(1, fan_out / fan_in)) = 2
        assert 0.5 < s.min() and s.max() < 1.5, s
        for j in range(3):  # q, k and v are three matrices, each (C, H * hs)
            m = -np.asarray(updates["blocks"]["sa"]["qkv"]["kernel"][i, :, j]).reshape(C, H * hs)
            s = np.linalg.svd(m, compute_uv=False)
            assert 0.5 < s.min() and s.max() < 1.5, s
    assert np.linalg.svd(fc[0], compute_uv=False)[[0, -1]].tolist() == pytest.approx([1.0, 1 / 300.0])


def test_lora_and_weight_decay_masks_hold_under_muon():
    tc = TrainConfig(optimizer="muon", weight_decay=0.5, learning_rate=0.1)
    params = random_params(TINY)
    zero = jax.tree.map(jnp.zeros_like, params)
    opt = make_optimizer(TINY, tc)
    updates, _ = jax.jit(opt.update)(zero, opt.init(params), params)  # zero gradient: only the decay moves anything
    for path, u in jax.tree_util.tree_flatten_with_path(updates)[0]:
        key, p = jax.tree_util.keystr(path), params
        for k in path:
            p = p[k.key]
        decays = _expected_label(key) == "adamw" and p.ndim - ("blocks" in key) >= 2  # embeddings and lm_head
        np.testing.assert_allclose(u, -lr_schedule(tc)(0) * 0.5 * p if decays else 0.0, atol=1e-7, err_msg=key)
    lora = replace(TINY, lora_rank=2)
    params = random_params(lora)
    grads = jax.tree.map(jnp.ones_like, params)
    opt = make_optimizer(lora, tc)
    updates, _ = jax.jit(opt.update)(grads, opt.init(params), params)
    for path, u in jax.tree_util.tree_flatten_with_path(updates)[0]:
        assert bool(jnp.any(u != 0)) == ("lora_b" in jax.tree_util.keystr(path) or
                                         "lora_a" in jax.tree_util.keystr(path)), jax.tree_util.keystr(path)


def test_wsd_schedule():
    tc = TrainConfig(decay_lr=True, schedule="wsd", learning_rate=1.0, min_lr=0.1, warmup_iters=9,
                     lr_decay_iters=100, cooldown_frac=0.2)
    lr = lambda it: float(lr_schedule(tc)(it))
    assert lr(4) == pytest.approx(0.5) and lr(9) == lr(50) == lr(80) == 1.0
    assert lr(90) == pytest.approx(0.55) and lr(100) == lr(200) == pytest.approx(0.1)
    assert float(lr_schedule(tc, 0.5)(50)) == 0.5


# parameter counts at vocab 65 before the switches existed (48e5faf; nanogpt-cpu was `baby` then); the defaults
# keep every layout. The ladder's steps before the residual one lost their projections with `proj=False` (issue 25:
# the lecture's code at each step, whose counts tests/test_ladder.py computes from the lecture's modules)
COUNTS = {"bigram": 4225, "nanogpt-cpu": 804096, "lecture": 10788929, "shakespeare-char": 10745088,
          "ladder-bigram": 4225, "ladder-pos": 4481, "ladder-head": 7553, "ladder-multihead": 7553, "ladder-ffwd": 8609,
          "ladder-blocks": 16865, "ladder-residual": 41921, "ladder-layernorm": 42369, "ladder-dropout": 42369,
          "babygpt": 23233, "gpt2-124m": 85838592}  # gpt2-124m: its 65 characters padded to 128 rows


def test_defaults_are_todays_behaviour():
    built_from_switches = {"baby", "shakespeare-bpe"}  # the BPE: baby's model at block 64 with a tied head
    assert PRESETS["shakespeare-bpe"].model == replace(PRESETS["baby"].model, tie_embeddings=True, block_size=64)
    for name, preset in PRESETS.items():
        if isinstance(preset.model, GPTConfig) and name not in built_from_switches:
            shapes = jax.eval_shape(init_params, replace(preset.model, vocab_size=65), jax.random.PRNGKey(0))
            assert count_params(shapes) == COUNTS[name], name
            assert (preset.model.norm, preset.model.qk_norm, preset.model.zero_init_proj, preset.model.logit_softcap,
                    preset.train.optimizer, preset.train.schedule) == ("layer", False, False, 0.0, "adamw", "cosine")
    baby = jax.eval_shape(init_params, replace(PRESETS["baby"].model, vocab_size=65), jax.random.PRNGKey(0))
    assert count_params(baby) == 804096 - 64 * 128 + 65 * 128  # nanogpt-cpu without its position table (RoPE), with
    # its own lm_head (bias-free, untied)
    ln_f = jax.eval_shape(init_params, replace(TINY, norm="rms"), jax.random.PRNGKey(0))["ln_f"]
    assert set(ln_f) == {"scale"}  # RMSNorm: a gain, no bias
