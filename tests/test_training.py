"""train_step and the evaluations: jit == no-jit, over-fitting, the schedule, decay mask, full-pass loss."""
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import TINY, TINY_TRAIN
from jaxgpt import PRESETS, build_model, create_state, evaluate_full, loss_fn, train_steps_jit
from jaxgpt.training import decay_mask, lr_schedule


def test_jit_equals_no_jit():
    mc = replace(TINY, dropout=0.1)
    params = create_state(mc, TINY_TRAIN).params
    x = jax.random.randint(jax.random.PRNGKey(5), (4, mc.block_size), 0, mc.vocab_size)
    grad_fn = jax.value_and_grad(loss_fn)
    (l1, g1), (l2, g2) = jax.jit(grad_fn, static_argnums=1)(params, mc, x, x, jax.random.PRNGKey(6)), \
        grad_fn(params, mc, x, x, jax.random.PRNGKey(6))  # op-by-op dispatch, no whole-step program
    np.testing.assert_allclose(float(l1), float(l2), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-7)


def test_overfits_one_batch():
    tc = replace(TINY_TRAIN, learning_rate=3e-3, max_iters=300)
    data = jax.random.randint(jax.random.PRNGKey(7), (TINY.block_size + 1,), 0, TINY.vocab_size).astype(jnp.uint8)
    state = create_state(TINY, tc)  # one window fits: every batch is the same sequence
    losses = []
    for _ in range(3):
        state, metrics = train_steps_jit(state, data, TINY, tc, 100)
        losses.append(float(metrics["loss"][-1]))
    assert losses[-1] < 0.5, losses
    assert int(state.step) == 300


def test_steps_per_call_does_not_change_the_run():
    data = jax.random.randint(jax.random.PRNGKey(8), (500,), 0, TINY.vocab_size).astype(jnp.uint8)
    a, _ = train_steps_jit(create_state(TINY, TINY_TRAIN), data, TINY, TINY_TRAIN, 10)
    b = create_state(TINY, TINY_TRAIN)
    for _ in range(2):
        b, _ = train_steps_jit(b, data, TINY, TINY_TRAIN, 5)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)


def test_gradient_accumulation_runs_and_counts_one_step():
    tc = replace(TINY_TRAIN, gradient_accumulation_steps=2)
    data = jax.random.randint(jax.random.PRNGKey(9), (300,), 0, TINY.vocab_size).astype(jnp.uint8)
    state, metrics = train_steps_jit(create_state(TINY, tc), data, TINY, tc, 5)
    assert int(state.step) == 5 and np.isfinite(np.asarray(metrics["loss"])).all()


def test_lr_schedule_matches_nanogpt_get_lr():
    tc = PRESETS["shakespeare-char"].train
    sched = lr_schedule(tc)

    def get_lr(it):  # nanoGPT train.py
        if it < tc.warmup_iters:
            return tc.learning_rate * (it + 1) / (tc.warmup_iters + 1)
        if it > tc.lr_decay_iters:
            return tc.min_lr
        ratio = (it - tc.warmup_iters) / (tc.lr_decay_iters - tc.warmup_iters)
        return tc.min_lr + 0.5 * (1.0 + np.cos(np.pi * ratio)) * (tc.learning_rate - tc.min_lr)

    for it in (0, 50, 99, 100, 101, 2500, 4999, 5000, 6000):
        assert float(sched(it)) == pytest.approx(get_lr(it), rel=1e-5)
    assert float(lr_schedule(PRESETS["lecture"].train)(1234)) == pytest.approx(3e-4)


def test_weight_decay_only_on_matrices_even_when_layers_are_stacked():
    state = create_state(TINY, TINY_TRAIN)
    mask = decay_mask(state.params)
    assert mask["blocks"]["sa"]["qkv"]["kernel"] and mask["token_embedding_table"]["embedding"]
    assert not mask["blocks"]["ln1"]["scale"] and not mask["blocks"]["ffwd"]["fc"]["bias"]
    assert not mask["ln_f"]["scale"] and not mask["lm_head"]["bias"]


def test_evaluate_full_is_the_mean_over_every_target():
    state = create_state(TINY, TINY_TRAIN)
    tokens = np.asarray(jax.random.randint(jax.random.PRNGKey(4), (100,), 0, TINY.vocab_size), np.uint8)
    got = evaluate_full(state.params, tokens, TINY, batch_windows=4)
    model = build_model(TINY)
    total = 0.0
    for start in range(0, 99, TINY.block_size):  # each window scored on its own, as the full pass does
        x = tokens[start:start + TINY.block_size][None].astype(np.int32)
        y = tokens[start + 1:start + 1 + TINY.block_size][None].astype(np.int32)
        x = x[:, :y.shape[1]]
        logits, _ = model.apply({"params": state.params}, x)
        logp = jax.nn.log_softmax(logits[0], axis=-1)
        total -= float(jnp.take_along_axis(logp, y[0][:, None], axis=-1).sum())
    assert got == pytest.approx(total / 99, rel=1e-5)


@pytest.mark.parametrize("preset", ["lecture", "shakespeare-char"])
def test_10m_presets_shape_and_one_tiny_step(preset):
    p = PRESETS[preset]
    abstract = jax.eval_shape(lambda: create_state(p.model, p.train))
    assert abstract.params["blocks"]["sa"]["qkv"]["kernel"].shape == (6, 384, 3, 6, 64)
    mc = replace(p.model, block_size=8, n_layer=1)  # one real step, small enough for a 2-core CPU
    tc = replace(p.train, batch_size=2)
    data = jax.random.randint(jax.random.PRNGKey(6), (64,), 0, mc.vocab_size).astype(jnp.uint8)
    state, metrics = train_steps_jit(create_state(mc, tc), data, mc, tc, 1)
    assert np.isfinite(float(metrics["loss"][0])) and int(state.step) == 1
