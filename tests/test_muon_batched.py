"""Muon's Newton-Schulz batched by matrix shape (bench/muon_cost.py's timed variant, issue 24) equals jaxgpt's Muon
(one Newton-Schulz per leaf), so the bench compares the same math."""
import sys
from dataclasses import replace

import jax
import numpy as np
import optax
import pytest

from conftest import REPO
from jaxgpt import optim
from jaxgpt.model import init_params
from jaxgpt.presets import get_preset

sys.path.insert(0, str(REPO / "bench"))
import muon_cost  # noqa: E402


def n_dots(f, *args) -> int:
    return str(jax.make_jaxpr(f)(*args)).count("dot_general")


@pytest.mark.parametrize("scan", [True, False])
def test_batched_newton_schulz_equals_per_leaf_on_baby(scan, monkeypatch):
    mc = replace(get_preset("baby").model, vocab_size=65, scan_layers=scan)
    shapes = jax.eval_shape(init_params, mc, jax.random.PRNGKey(0))
    rng = np.random.default_rng(int(scan))
    tree = lambda s: jax.tree.map(lambda x: np.asarray(rng.normal(0.0, s, x.shape), x.dtype), shapes)
    params, grads = tree(0.1), [tree(1.0), tree(1.0)]
    old = optim.muon_adamw(0.05, 0.95, optax.adamw(1e-3))
    monkeypatch.setattr(optim, "muon", muon_cost.batched_muon)
    new = optim.muon_adamw(0.05, 0.95, optax.adamw(1e-3))
    s_new, s_old = new.init(params), old.init(params)
    assert jax.tree.structure(s_new) == jax.tree.structure(s_old)  # the same state: checkpoints would restore
    for g in grads:  # two steps, so the momentum's bias correction and Nesterov term are in play
        u_new, s_new = jax.jit(new.update)(g, s_new, params)
        u_old, s_old = jax.jit(old.update)(g, s_old, params)
        for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(u_new)[0], jax.tree.leaves(u_old)):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=0, err_msg=jax.tree_util.keystr(path))
    # baby's 24 Block matrices in 4 leaves fall into two shapes (128 x 128 and 128 x 512): 2 x 5 x 3 batched
    # matmuls, not one set per leaf (4 x 5 x 3)
    muon_half = jax.tree.map(lambda label, x: x if label == "muon" else optax.MaskedNode(),
                             optim.labels(grads[0]), grads[0])  # what multi_transform gives Muon
    dims = optim._masked_dimension_numbers(muon_half)
    assert len(jax.tree.leaves(muon_half)) == 4
    coeffs = optim.ns_table(5, "quintic")
    assert n_dots(lambda u: muon_cost.orthogonalize_by_shape(u, dims, coeffs), muon_half) == 2 * 5 * 3


def test_plain_newton_schulz_equals_the_gram_form_on_baby(monkeypatch):
    """bench/muon_cost.py's 'plain NS' variant (jaxgpt's before the Gram form) is the same math as jaxgpt's Muon:
    within 1e-5 on baby's tree, with 3 products a step on every leaf (no Gram form)."""
    mc = replace(get_preset("baby").model, vocab_size=65)
    shapes = jax.eval_shape(init_params, mc, jax.random.PRNGKey(0))
    rng = np.random.default_rng(2)
    params, grads = (jax.tree.map(lambda x: np.asarray(rng.normal(0.0, s, x.shape), x.dtype), shapes)
                     for s in (0.1, 1.0))
    make = lambda: optim.muon_adamw(0.0125, 0.9, optax.adamw(1e-3), 3, "polar_express")  # a fresh trace each
    opt = make()
    gram, _ = jax.jit(opt.update)(grads, opt.init(params), params)
    assert n_dots(opt.update, grads, opt.init(params), params) == 2 * 3 * 3 + 2 * 11
    monkeypatch.setattr(optim, "newton_schulz", muon_cost.plain_newton_schulz)
    opt = make()
    plain, _ = jax.jit(opt.update)(grads, opt.init(params), params)
    assert n_dots(opt.update, grads, opt.init(params), params) == 4 * 3 * 3
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(plain)[0], jax.tree.leaves(gram)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0, err_msg=jax.tree_util.keystr(path))
    assert not np.array_equal(plain["blocks"]["ffwd"]["fc"]["kernel"], gram["blocks"]["ffwd"]["fc"]["kernel"])
