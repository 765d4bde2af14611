"""The params' moving average (`TrainConfig.ema_decay`, issue 24): the plain rule, training untouched, and a run
that evaluates, saves, samples and resumes the average."""
import json
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from _runs import argv, final_state, records, text_file
from conftest import TINY, TINY_TRAIN
from jaxgpt import checkpoint as ckpt
from jaxgpt import sharding
from jaxgpt.cli import train_main
from jaxgpt.config import ConfigError, TrainConfig, from_dict, to_dict
from jaxgpt.data import CharTokenizer, train_val_split
from jaxgpt.presets import get_preset
from jaxgpt.training import create_state, evaluate_full, train_step

STEPS = 14  # the decay reaches ema_decay 0.5 at step 8: both sides of the min are used


def _trajectory(tc, n):
    """(states after each of n steps) of the tiny model on random tokens."""
    data = jax.random.randint(jax.random.PRNGKey(0), (400,), 0, TINY.vocab_size)
    step = jax.jit(lambda s: train_step(s, data, TINY, tc)[0])
    states = [create_state(TINY, tc)]
    for _ in range(n):
        states.append(step(states[-1]))
    return states


def test_the_average_follows_the_plain_rule_and_leaves_training_alone():
    with_ema = _trajectory(replace(TINY_TRAIN, ema_decay=0.5), STEPS)
    without = _trajectory(TINY_TRAIN, STEPS)
    assert without[-1].ema is None
    for a, b in zip(jax.tree.leaves(with_ema[-1].params), jax.tree.leaves(without[-1].params), strict=True):
        assert np.array_equal(a, b)  # the average is only read, never fed back
    expect = [np.asarray(p, np.float64) for p in jax.tree.leaves(with_ema[0].params)]
    for t in range(STEPS):
        d = min(0.5, (1 + t) / (10 + t))
        expect = [d * e + (1 - d) * np.asarray(p, np.float64)
                  for e, p in zip(expect, jax.tree.leaves(with_ema[t + 1].params))]
    got = jax.tree.leaves(with_ema[-1].ema)
    assert max(float(np.max(np.abs(g - e))) for g, e in zip(got, expect)) < 1e-6
    assert not all(np.array_equal(g, p) for g, p in zip(got, jax.tree.leaves(with_ema[-1].params)))


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_a_decay_outside_zero_to_one_is_refused_by_name(value):
    with pytest.raises(ConfigError, match=f"ema_decay {value}"):
        TrainConfig(ema_decay=value)


def test_a_config_from_before_the_switch_loads_without_an_average():
    preset = get_preset("baby")
    d = json.loads(json.dumps(to_dict(preset.model, preset.train)))
    del d["train"]["ema_decay"]
    assert preset.train.ema_decay > 0 and from_dict(d) == (preset.model, replace(preset.train, ema_decay=0.0))
    assert jax.eval_shape(lambda: create_state(TINY, TINY_TRAIN)).ema is None  # old run folders: the same state


def test_fsdp_splits_the_average_as_it_splits_the_params():
    """state_shardings reads each leaf's path: the average's leaves (paths under .ema) get their param's split."""
    state = jax.eval_shape(lambda: create_state(TINY, replace(TINY_TRAIN, ema_decay=0.9)))
    specs = {jax.tree_util.keystr(path): sharding.param_spec(path, x.shape, 8)
             for path, x in jax.tree_util.tree_leaves_with_path(state)}
    params = {k.removeprefix(".params"): v for k, v in specs.items() if k.startswith(".params")}
    ema = {k.removeprefix(".ema"): v for k, v in specs.items() if k.startswith(".ema")}
    assert ema == params and any(spec != P() for spec in params.values())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny run with the average: straight through, and stopped half way then resumed."""
    folder = tmp_path_factory.mktemp("ema")
    text = text_file(folder)
    straight, resumed = folder / "straight", folder / "resumed"
    assert train_main(argv(text, straight, ema_decay=0.9)) == 0
    assert train_main(argv(text, resumed, "--max-iters", "4", ema_decay=0.9)) == 0
    assert train_main(["--out-dir", str(resumed), "--resume", "--max-iters", "8"]) == 0
    return text, straight, resumed


def test_a_run_evaluates_and_saves_the_average_and_resumes_it_exactly(runs):
    text, straight, resumed = runs
    state, step = final_state(straight)
    assert state.ema is not None
    mc, params, _, _ = ckpt.load_params(straight)  # what sample.py reads: the average, not the live params
    for e, p in zip(jax.tree.leaves(state.ema), jax.tree.leaves(params), strict=True):
        assert np.array_equal(e, p)
    assert not all(np.array_equal(e, p) for e, p in zip(jax.tree.leaves(state.ema), jax.tree.leaves(state.params)))
    raw = text.read_text()
    val = train_val_split(np.asarray(CharTokenizer.from_text(raw).encode(raw)), mc.block_size)[1]
    last = records(straight)[-1]
    assert last["step"] == step
    assert last["val_loss_full"] == pytest.approx(evaluate_full(jax.tree.map(jnp.asarray, params), val, mc),
                                                  abs=1e-4)
    other, _ = final_state(resumed)
    for a, b in zip(jax.tree.leaves(other), jax.tree.leaves(state), strict=True):
        assert np.array_equal(a, b)
