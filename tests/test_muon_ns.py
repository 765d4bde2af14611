"""Muon's switches (`TrainConfig.muon_ns_steps`, `muon_ns_coeffs`, `muon_weight_decay`, `muon_per_head`,
`muon_ns_dtype`, issue 24): the default is optax's quintic (bit for bit on square matrices; wide ones run it on their
Gram matrix, equal at float32 rounding); Polar Express equals a plain-jnp version of modded-nanogpt's and runs
unrolled; bf16 products equal a plain-jnp version whose products read bf16 inputs; the weight decay equals
lr x wd x W; per-head Muon orthogonalises each head's matrix; bad values are refused; a config.json from before the
switches loads with the defaults."""
import json
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax.contrib import MuonDimensionNumbers, scale_by_muon

from jaxgpt import optim
from jaxgpt.config import TrainConfig, from_dict, to_dict
from jaxgpt.errors import ConfigError
from jaxgpt.model import init_params
from jaxgpt.presets import get_preset
from jaxgpt.training import make_optimizer

PE = [(8.156554524902461, -22.48329292557795, 15.878769915207462),
      (4.042929935166739, -2.808917465908714, 0.5000178451051316),
      (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
      (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
      (2.3465413258596377, -1.7097828382687081, 0.42323551169305323)]


def polar_express(g, steps):
    """modded-nanogpt's polar_express in float32 jnp: short side first, X / (1.02 |X|_F), then the per-step sets."""
    x = g.T if g.shape[0] > g.shape[1] else g
    x = x / (jnp.linalg.norm(x) * 1.02 + 1e-6)
    for a, b, c in PE[:steps]:
        A = x @ x.T
        x = a * x + (b * A + c * A @ A) @ x
    return x.T if g.shape[0] > g.shape[1] else x


def baby_trees(seed):
    mc = replace(get_preset("baby").model, vocab_size=65)
    shapes = jax.eval_shape(init_params, mc, jax.random.PRNGKey(0))
    rng = np.random.default_rng(seed)
    return [jax.tree.map(lambda x: np.asarray(rng.normal(0.0, s, x.shape), x.dtype), shapes) for s in (0.1, 1.0)]


def test_default_is_optax_quintic_bit_for_bit():
    params, grads = baby_trees(0)
    old = optax.chain(scale_by_muon(beta=0.95, nesterov=True, weight_dimension_numbers=optim._masked_dimension_numbers),
                      optim.scale_by_shape(weight_dimension_numbers=optim._masked_dimension_numbers),
                      optax.scale_by_learning_rate(0.05))
    old = optax.multi_transform({"muon": old, "adamw": optax.adamw(1e-3)}, optim.labels)
    new = optim.muon_adamw(0.05, 0.95, optax.adamw(1e-3), TrainConfig().muon_ns_steps, TrainConfig().muon_ns_coeffs)
    u_old, _ = jax.jit(old.update)(grads, old.init(params), params)
    u_new, _ = jax.jit(new.update)(grads, new.init(params), params)
    labels = optim.labels(params)
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(u_new)[0], jax.tree.leaves(u_old)):
        if optim._keys(path)[-3:-1] in {("ffwd", "fc"), ("ffwd", "proj")}:  # 128 x 512: the Gram form
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
            assert not np.array_equal(a, b)  # the Gram form did run
        else:
            np.testing.assert_array_equal(a, b)
    assert sum(label == "muon" for label in jax.tree.leaves(labels)) == 4


@pytest.mark.parametrize("shape", [(128, 512), (512, 128), (32, 128), (128, 384)])
@pytest.mark.parametrize("steps, coeffs", [(5, "quintic"), (3, "polar_express"), (5, "polar_express")])
def test_gram_form_equals_the_plain_iteration_on_wide_matrices(shape, steps, coeffs):
    """A wide matrix's Newton-Schulz runs on its Gram matrix (fewer multiply-adds): the plain iteration's result
    within 1e-5, on a gradient of condition 1000 (its smallest singular values barely above float32's noise)."""
    rng = np.random.default_rng(0)
    g = (rng.normal(size=shape) * np.logspace(-3, 0, shape[1])).astype(np.float32)
    x = jnp.asarray(g.T if shape[0] > shape[1] else g)
    x = x / (jnp.linalg.norm(x) + 1e-8)
    for a, b, c in optim.ns_table(steps, coeffs):
        A = x @ x.T
        x = a * x + (b * A + c * A @ A) @ x
    want = x.T if shape[0] > shape[1] else x
    got = optim.newton_schulz(jnp.asarray(g), MuonDimensionNumbers(0, 1), optim.ns_table(steps, coeffs))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("steps", [3, 5])
def test_polar_express_equals_plain_jnp_on_baby(steps):
    params, grads = baby_trees(steps)
    opt = optim.muon_adamw(1.0, 0.0, optax.adamw(1e-3), steps, "polar_express")  # momentum 0: the update is NS(g)
    updates, _ = jax.jit(opt.update)(grads, opt.init(params), params)
    fc, g = updates["blocks"]["ffwd"]["fc"]["kernel"], grads["blocks"]["ffwd"]["fc"]["kernel"]  # (L, C, 4C)
    for i in range(fc.shape[0]):
        want = polar_express(jnp.asarray(g[i]), steps) * 2.0  # sqrt(max(1, 4C / C))
        np.testing.assert_allclose(-fc[i], want, atol=1e-5, rtol=0)
    q, gq = updates["blocks"]["sa"]["qkv"]["kernel"], grads["blocks"]["sa"]["qkv"]["kernel"]  # (L, C, 3, H, hs)
    L, C = q.shape[:2]
    for i in range(L):
        for j in range(3):
            want = polar_express(jnp.asarray(gq[i, :, j]).reshape(C, -1), steps)
            np.testing.assert_allclose(-np.asarray(q[i, :, j]).reshape(C, -1), want, atol=1e-5, rtol=0)
    proj, gp = updates["blocks"]["ffwd"]["proj"]["kernel"], grads["blocks"]["ffwd"]["proj"]["kernel"]  # (L, 4C, C)
    np.testing.assert_allclose(-proj[0], polar_express(jnp.asarray(gp[0]), steps), atol=1e-5, rtol=0)


def test_five_polar_express_steps_orthogonalise_tighter_than_the_quintic():
    rng = np.random.default_rng(0)
    g = jnp.asarray((rng.normal(size=(128, 512)) * np.logspace(-3, 0, 512)).astype(np.float32))  # condition ~1e3
    band = lambda coeffs: np.linalg.svd(np.asarray(optim.newton_schulz(
        g, MuonDimensionNumbers(0, 1), coeffs)), compute_uv=False)[[0, -1]]  # (largest, smallest) singular value
    hi, lo = band(optim.ns_table(5, "polar_express"))  # the package's table, as training runs it
    assert 0.8 < lo and hi < 1.2, (hi, lo)
    hi, lo = band(optim.ns_table(5, "quintic"))
    assert lo < 0.8, (hi, lo)  # the quintic leaves its smallest values lower (0.68 here)


@pytest.mark.parametrize("sets, bad", [(dict(muon_ns_coeffs="cubic"), "muon_ns_coeffs"),
                                       (dict(muon_ns_steps=0), "muon_ns_steps 0"),
                                       (dict(muon_ns_steps=6, muon_ns_coeffs="polar_express"), "muon_ns_steps 6"),
                                       (dict(muon_weight_decay=-0.1), "muon_weight_decay -0.1"),
                                       (dict(muon_lr=0.05, muon_weight_decay=20.0), "muon_weight_decay 20.0"),
                                       (dict(muon_ns_dtype="float16"), "muon_ns_dtype 'float16'")])
def test_bad_values_are_refused_by_name(sets, bad):
    with pytest.raises(ConfigError, match=bad):
        TrainConfig(**sets)


def test_a_config_from_before_the_switches_loads_with_the_default():
    preset = get_preset("baby")
    d = json.loads(json.dumps(to_dict(preset.model, preset.train)))  # as config.json and checkpoints hold it
    for key in ("muon_ns_steps", "muon_ns_coeffs", "muon_weight_decay", "muon_per_head", "muon_ns_dtype"):
        del d["train"][key]
    mc, tc = from_dict(d)
    assert (tc.muon_ns_steps, tc.muon_ns_coeffs, tc.muon_weight_decay, tc.muon_per_head, tc.muon_ns_dtype) == \
        (5, "quintic", 0.0, False, "float32")
    assert (mc, tc) == (preset.model, replace(preset.train, muon_ns_steps=5, muon_ns_coeffs="quintic",
                                              muon_weight_decay=0.0, muon_per_head=False, muon_ns_dtype="float32"))


@pytest.mark.parametrize("steps, coeffs", [(5, "quintic"), (4, "quintic"), (3, "polar_express"), (1, "polar_express")])
def test_the_optimizer_state_is_the_one_old_run_folders_hold(steps, coeffs):
    """Before jaxgpt's own loop, optax's scale_by_muon got the quintic as one set and a step count and Polar Express
    as its table; it keeps them in its state, so the state's leaves (shapes and values) must stay those."""
    params, _ = baby_trees(0)
    args = (dict(ns_coeffs=(3.4445, -4.775, 2.0315), ns_steps=steps) if coeffs == "quintic" else
            dict(ns_coeffs=optim.POLAR_EXPRESS[:steps]))
    old = optax.chain(scale_by_muon(beta=0.9, nesterov=True, weight_dimension_numbers=optim._masked_dimension_numbers,
                                    **args),
                      optim.scale_by_shape(weight_dimension_numbers=optim._masked_dimension_numbers),
                      optax.scale_by_learning_rate(0.0125))
    old = optax.multi_transform({"muon": old, "adamw": optax.adamw(1e-3)}, optim.labels)
    new = optim.muon_adamw(0.0125, 0.9, optax.adamw(1e-3), steps, coeffs)
    s_old, s_new = old.init(params), new.init(params)
    assert jax.tree.structure(s_new) == jax.tree.structure(s_old)
    for a, b in zip(jax.tree.leaves(s_new), jax.tree.leaves(s_old)):
        np.testing.assert_array_equal(a, b)


def test_polar_express_runs_unrolled():
    """optax runs a per-step table as a lax.scan; jaxgpt's own loop is unrolled: 4 leaves x 3 steps x 3 matmuls."""
    params, grads = baby_trees(0)
    opt = optim.muon_adamw(0.0125, 0.9, optax.adamw(1e-3), 3, "polar_express")
    jaxpr = str(jax.make_jaxpr(opt.update)(grads, opt.init(params), params))
    assert "scan" not in jaxpr and "while" not in jaxpr
    # 2 square leaves (qkv, sa proj) x 3 steps x 3 products; 2 wide ones in Gram form: G, 3 A A, 2 M Q, 2 x 2 for
    # A <- M A M, then Q X
    assert jaxpr.count("dot_general") == 2 * 3 * 3 + 2 * (1 + 3 + 2 + 4 + 1)


def test_a_bf16_product_is_the_exact_product_of_bf16_inputs_summed_in_f32():
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=(3, 128, 128)).astype(np.float32) for _ in range(2))
    got = np.asarray(optim._dot(jnp.asarray(a).astype(jnp.bfloat16), jnp.asarray(b).astype(jnp.bfloat16)))
    assert got.dtype == np.float32
    rounded = [np.asarray(jnp.asarray(x).astype(jnp.bfloat16)).astype(np.float64) for x in (a, b)]
    np.testing.assert_allclose(got, rounded[0] @ rounded[1], rtol=0, atol=2e-5)  # f32 sums of 128 exact products
    assert np.abs(got - (a.astype(np.float64) @ b)).max() > 1e-2  # the inputs were rounded


def gram_bf16(x, coeffs):
    """muon_ns_dtype bfloat16 in plain jnp: the Gram form on x (N, s, l) with each product's inputs rounded to bf16,
    sums and the rest f32; a tall x (N, l, s) with G = x^T x and x Q."""
    bf = lambda y: y.astype(jnp.bfloat16)
    dot = lambda a, b: jnp.einsum("nij,njk->nik", bf(a), bf(b), preferred_element_type=jnp.float32)
    tall = x.shape[1] > x.shape[2]
    x = x / (jnp.linalg.norm(x, axis=(1, 2), keepdims=True) + 1e-8)
    for i in range(0, len(coeffs), 3):  # X rebuilt every 3 steps
        A, q = (dot(x.swapaxes(1, 2), x) if tall else dot(x, x.swapaxes(1, 2))), None
        for a, b, c in coeffs[i:i + 3]:
            M = a * jnp.eye(A.shape[1]) + b * A + dot(c * A, A)
            q = M if q is None else dot(M, q)
            A = dot(M, dot(A, M))  # unused after the last step
        x = dot(x, q) if tall else dot(q, x)
    return x


@pytest.mark.parametrize("shape", [(128, 128), (128, 512), (512, 128), (96, 128)])
@pytest.mark.parametrize("steps, coeffs", [(5, "quintic"), (3, "polar_express")])
def test_bf16_products_equal_plain_jnp(shape, steps, coeffs):
    """bf16 products: every matrix in Gram form (square ones too), a tall one as its transpose without moving it:
    the plain-jnp version's result within 1e-5, not the float32 iteration's."""
    g = np.random.default_rng(1).normal(size=(4, *shape)).astype(np.float32)
    want = gram_bf16(jnp.asarray(g), optim.ns_table(steps, coeffs))
    dims = MuonDimensionNumbers((1,), (2,))
    got = optim.newton_schulz(jnp.asarray(g), dims, optim.ns_table(steps, coeffs), "bfloat16")
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    f32 = optim.newton_schulz(jnp.asarray(g), dims, optim.ns_table(steps, coeffs))
    assert float(jnp.linalg.norm(got - f32) / jnp.linalg.norm(f32)) > 1e-3  # the products did read bf16


@pytest.mark.parametrize("shape", [(128, 128), (128, 512), (512, 128)])
@pytest.mark.parametrize("steps, coeffs", [(5, "quintic"), (3, "polar_express"), (5, "polar_express")])
def test_bf16_products_orthogonalise_as_float32_does(shape, steps, coeffs):
    """On a gradient of condition 100,000: bf16's largest and median singular values within 0.05 of the float32
    iteration's (one Gram iteration of 5 bf16 steps, X not rebuilt after 3, gave 15 to 49,000 here, float32 1.2)."""
    cond = 1e5
    rng = np.random.default_rng(2)
    s = min(shape)
    u, v = (np.linalg.qr(rng.normal(size=(n, s)))[0] for n in (max(shape), s))
    g = (u * np.logspace(-np.log10(cond), 0, s)) @ v.T  # (long, short)
    g = jnp.asarray((g.T if shape[0] < shape[1] else g).astype(np.float32))
    dims = MuonDimensionNumbers(0, 1)
    bands = [np.linalg.svd(np.asarray(optim.newton_schulz(g, dims, optim.ns_table(steps, coeffs), d)),
                           compute_uv=False) for d in ("bfloat16", "float32")]
    np.testing.assert_allclose(bands[0].max(), bands[1].max(), atol=0.05)
    np.testing.assert_allclose(np.median(bands[0]), np.median(bands[1]), atol=0.05)


def test_muon_ns_dtype_reaches_every_newton_schulz_product():
    params, grads = baby_trees(0)
    mc, tc = get_preset("baby").model, replace(get_preset("baby").train, muon_ns_dtype="bfloat16")
    opt = make_optimizer(replace(mc, vocab_size=65), tc)
    dots = dot_generals(jax.make_jaxpr(opt.update)(grads, opt.init(params), params).jaxpr)
    assert len(dots) == 4 * (1 + 3 + 2 + 4 + 1)  # every leaf in Gram form: G, 3 A A, 2 M Q, 2 x 2 for A, Q X
    for eqn in dots:
        assert [v.aval.dtype for v in eqn.invars] == [jnp.bfloat16] * 2, eqn
        assert eqn.params["preferred_element_type"] == jnp.float32, eqn


def dot_generals(jaxpr) -> list:
    """The dot_general equations of a jaxpr and of the jaxprs inside it (jit, custom_jvp, ...)."""
    out = []
    for eqn in jaxpr.eqns:
        out += [eqn] if eqn.primitive.name == "dot_general" else []
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", param)
            if hasattr(inner, "eqns"):
                out += dot_generals(inner)
    return out


def test_muon_weight_decay_is_lr_times_decay_times_the_weights():
    params, grads = baby_trees(1)
    lr, wd = 0.0125, 0.3
    plain, decayed = (optim.muon_adamw(lr, 0.9, optax.adamw(1e-3), 3, "polar_express", w) for w in (0.0, wd))
    u0, _ = jax.jit(plain.update)(grads, plain.init(params), params)
    u1, _ = jax.jit(decayed.update)(grads, decayed.init(params), params)
    labels = optim.labels(params)
    for label, w, a, b in zip(jax.tree.leaves(labels), jax.tree.leaves(params), jax.tree.leaves(u1),
                              jax.tree.leaves(u0)):
        want = np.asarray(b) - lr * wd * np.asarray(w) if label == "muon" else np.asarray(b)  # AdamW's untouched
        np.testing.assert_allclose(a, want, atol=1e-7, rtol=1e-6)
    assert sum(label == "muon" for label in jax.tree.leaves(labels)) == 4


def test_per_head_muon_orthogonalises_each_head_and_keeps_the_state():
    """muon_per_head: each head's (C, hs) slice of q, k, v and (hs, C) slice of attention's proj is its own matrix
    (plain-jnp Polar Express of that slice, scaled as the whole C x C matrix: 1); the feed-forward's are unchanged;
    the optimizer state is the one without the switch, so checkpoints load either way."""
    params, grads = baby_trees(2)
    whole, per_head = (optim.muon_adamw(1.0, 0.0, optax.adamw(1e-3), 3, "polar_express", per_head=h)
                       for h in (False, True))  # momentum 0: the update is NS(g)
    u_whole, _ = jax.jit(whole.update)(grads, whole.init(params), params)
    u, _ = jax.jit(per_head.update)(grads, per_head.init(params), params)
    q, gq = u["blocks"]["sa"]["qkv"]["kernel"], grads["blocks"]["sa"]["qkv"]["kernel"]  # (L, C, 3, H, hs)
    for i, j, h in [(0, 0, 0), (1, 1, 2), (3, 2, 3)]:
        np.testing.assert_allclose(-q[i, :, j, h], polar_express(jnp.asarray(gq[i, :, j, h]), 3), atol=1e-5, rtol=0)
    p, gp = u["blocks"]["sa"]["proj"]["kernel"], grads["blocks"]["sa"]["proj"]["kernel"]  # (L, H, hs, C)
    for i, h in [(0, 1), (2, 3)]:
        np.testing.assert_allclose(-p[i, h], polar_express(jnp.asarray(gp[i, h]), 3), atol=1e-5, rtol=0)
    for name in ("fc", "proj"):
        np.testing.assert_array_equal(u["blocks"]["ffwd"][name]["kernel"], u_whole["blocks"]["ffwd"][name]["kernel"])
    assert not np.allclose(q, u_whole["blocks"]["sa"]["qkv"]["kernel"], atol=1e-3)
    s_whole, s_head = whole.init(params), per_head.init(params)
    assert jax.tree.structure(s_head) == jax.tree.structure(s_whole)
    for a, b in zip(jax.tree.leaves(s_head), jax.tree.leaves(s_whole)):
        np.testing.assert_array_equal(a, b)
