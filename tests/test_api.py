"""The public API's promises: configs checked when built, one config flow for the CLI, the donated step and the
caller's params, one argument order, and the deprecated names that still work for one release."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgpt
from conftest import TINY, TINY_TRAIN
from jaxgpt import cli, config as cfg
from jaxgpt.training import make_optimizer


def test_configs_are_checked_when_built():
    with pytest.raises(jaxgpt.ConfigError, match="n_embd 100 is not divisible by n_head 6"):
        jaxgpt.GPTConfig(n_embd=100, n_head=6)
    with pytest.raises(jaxgpt.ConfigError, match="batch_size 0 must be >= 1"):
        dataclasses.replace(TINY_TRAIN, batch_size=0)
    ngram = jaxgpt.get_preset("ngram").model
    assert isinstance(ngram, jaxgpt.NGramConfig) and not hasattr(ngram, "n_layer")
    assert issubclass(jaxgpt.ConfigError, ValueError) and issubclass(jaxgpt.UsageError, jaxgpt.JaxgptError)


def test_set_takes_several_pairs_and_repeats():
    args = cli.parse_train_args(["--set", "n_layer=2", "n_embd=64", "--set", "dropout=0.1", "--max-iters", "7"])
    assert args.overrides == {"n_layer": "2", "n_embd": "64", "dropout": "0.1", "max_iters": 7}
    run = cli.build_run(args)
    assert (run.model.n_layer, run.model.n_embd, run.model.dropout, run.train.max_iters) == (2, 64, 0.1, 7)
    # the command the README and the ngram preset's doc give
    run = cli.build_run(cli.parse_train_args(["--preset", "ngram", "--set", "n=5", "smoothing=add_alpha",
                                              "alpha=0.05"]))
    assert run.model == jaxgpt.NGramConfig(n=5, smoothing="add_alpha", alpha=0.05)


def test_vocab_size_is_refused_with_the_reason(capsys):
    assert cli.train_main(["--set", "vocab_size=70"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "vocab_size=70" in err and "tokenizer" in err


def test_parsing_touches_no_device(monkeypatch):
    """jax.distributed must start before anything touches a device or Orbax, so parsing itself must not start it."""
    from jaxgpt import sharding
    monkeypatch.setattr(sharding, "initialize", lambda *a, **k: pytest.fail("parsing started jax.distributed"))
    args = cli.parse_train_args(["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "0",
                                 "--resume", "--out-dir", "/nonexistent"])
    assert args.coordinator == "127.0.0.1:1" and args.resume


def test_the_donated_step_leaves_the_callers_params_alone():
    params = jaxgpt.init_params(TINY, jax.random.PRNGKey(0))
    state = jaxgpt.create_state(TINY, TINY_TRAIN, params)
    data = jnp.asarray(np.random.default_rng(0).integers(0, TINY.vocab_size, 500), jnp.uint8)
    new, metrics = jaxgpt.train_steps_jit(state, data, TINY, TINY_TRAIN, 2)
    leaf = jax.tree.leaves(state.params)[0]
    assert leaf.is_deleted()  # donated: use the returned state
    assert not any(x.is_deleted() for x in jax.tree.leaves(params))  # create_state copied them
    assert int(new.step) == 2 and metrics["loss"].shape == (2,)
    assert not np.array_equal(jax.tree.leaves(new.params)[0], jax.tree.leaves(params)[0])


def test_deprecated_names_warn_and_still_work():
    tokens = np.arange(100)
    with pytest.warns(DeprecationWarning, match="train_val_split"):
        train, val = jaxgpt.split(tokens, 8)
    assert (len(train), len(val)) == (90, 10)
    with pytest.warns(DeprecationWarning, match="init_cache"):
        assert jaxgpt.init_cache(TINY, 1)[0].shape == (2, 1, 2, 16, 16)  # (n_layer, B, H, block_size, hs)
    with pytest.warns(DeprecationWarning, match="make_optimizer"):
        old = make_optimizer(TINY_TRAIN, TINY)
    params = jaxgpt.init_params(TINY, jax.random.PRNGKey(0))
    grads = jax.tree.map(jnp.ones_like, params)
    a = old.update(grads, old.init(params), params)[0]
    new = make_optimizer(TINY, TINY_TRAIN)
    b = new.update(grads, new.init(params), params)[0]
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    with pytest.warns(DeprecationWarning, match="batch_size=B"):
        x, _ = jaxgpt.sample_batch(jnp.arange(50), jax.random.PRNGKey(0), 3, 4)
    assert x.shape == (3, 4)
    with pytest.warns(DeprecationWarning, match="checked when built"):
        assert TINY.validate() is TINY


def test_a_config_round_trips_through_its_json_form():
    for name in ("baby", "bigram", "ngram", "lecture"):
        preset = jaxgpt.get_preset(name)
        assert cfg.from_dict(cfg.to_dict(preset.model, preset.train)) == (preset.model, preset.train)
