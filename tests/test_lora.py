"""LoRA: only adapters train, base weights stay bit-identical, merged == unmerged, trainable counts."""
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import TINY, TINY_TRAIN, tiny_with
from jaxgpt.lora import add_adapters, count_frozen, count_trainable, merge_lora, strip_adapters
from jaxgpt import build_model, count_params, create_state, init_params, train_steps_jit
from jaxgpt.params import is_lora

RANK = 2
LORA = tiny_with(lora_rank=RANK, lora_alpha=4.0)
shapes = lambda c: jax.eval_shape(lambda k: init_params(c, k), jax.random.PRNGKey(0))  # counts need no compute
_logits = jax.jit(lambda c, p, x: build_model(c).apply({"params": p}, x)[0], static_argnums=0)


def logits(config, params, x):
    return np.asarray(_logits(config, params, x))


def _expected_adapter_params(c):
    """r (d_in + d_out) per adapted Dense: qkv C->3C, proj C->C, fc C->4C, ffwd proj 4C->C per layer; lm_head C->V."""
    C, r = c.n_embd, c.lora_rank
    per_layer = r * ((C + 3 * C) + (C + C) + (C + c.ffwd_mult * C) + (c.ffwd_mult * C + C))
    return c.n_layer * per_layer + r * (C + c.vocab_size)


@pytest.fixture(scope="module")
def trained():
    """Base params of a plain TINY model, fresh adapters on them, then 10 LoRA steps on random tokens."""
    base = strip_adapters(init_params(LORA, jax.random.PRNGKey(1)))  # the init add_adapters compiles anyway
    params = add_adapters(base, LORA, jax.random.PRNGKey(2))
    data = jax.random.randint(jax.random.PRNGKey(3), (400,), 0, TINY.vocab_size).astype(jnp.uint8)
    tc = replace(TINY_TRAIN, learning_rate=1e-2)
    state = create_state(LORA, tc, params=params)  # copies: params stays valid after the donating step
    state, _ = train_steps_jit(state, data, LORA, tc, 10)
    return base, params, state.params


def test_trainable_count_is_the_adapters_only():
    params = shapes(LORA)
    n_adapt = _expected_adapter_params(LORA)
    assert count_trainable(params, LORA) == n_adapt
    assert count_frozen(params, LORA) == count_params(shapes(TINY))
    assert count_trainable(params, TINY) == count_params(params)  # lora_rank 0: everything trains


def test_adapters_start_as_the_identity(trained):
    base, params, _ = trained
    x = jax.random.randint(jax.random.PRNGKey(4), (2, TINY.block_size), 0, TINY.vocab_size)
    assert jax.tree.structure(base) == jax.tree.structure(shapes(TINY))
    np.testing.assert_array_equal(logits(TINY, base, x), logits(LORA, params, x))  # B = 0 exactly


def test_base_weights_bit_identical_and_adapters_trained(trained):
    _, before, after = trained
    flat_before = dict(jax.tree_util.tree_leaves_with_path(before))
    changed = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(after):
        if is_lora(path):
            changed += not np.array_equal(np.asarray(leaf), np.asarray(flat_before[path]))
        else:
            assert np.array_equal(np.asarray(leaf), np.asarray(flat_before[path])), jax.tree_util.keystr(path)
    assert changed == sum(is_lora(p) for p, _ in jax.tree_util.tree_leaves_with_path(after))


def test_merged_and_unmerged_give_the_same_logits(trained):
    _, _, after = trained
    merged, plain_cfg = merge_lora(after, LORA)
    assert plain_cfg.lora_rank == 0
    assert not any(is_lora(p) for p, _ in jax.tree_util.tree_leaves_with_path(merged))
    assert count_params(merged) == count_params(shapes(TINY))
    x = jax.random.randint(jax.random.PRNGKey(5), (2, TINY.block_size), 0, TINY.vocab_size)
    unmerged, folded = logits(LORA, after, x), logits(TINY, merged, x)  # plain_cfg computes as TINY
    assert np.abs(unmerged - logits(TINY, trained[0], x)).max() > 1e-3  # the adapters changed the function...
    np.testing.assert_allclose(folded, unmerged, atol=1e-5, rtol=1e-5)  # ...and merging keeps it
