"""jaxgpt composes with JAX transforms: an ensemble of 4 seeds trained at once with vmap equals its 4 twins."""
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np

import jaxgpt
from conftest import TINY, TINY_TRAIN


def test_vmap_ensemble_of_4_seeds_equals_its_separately_trained_twins():
    n_steps, seeds = 10, [0, 1, 2, 3]
    tc = replace(TINY_TRAIN, learning_rate=1e-3)  # Adam's first steps move every weight by ~lr whatever its gradient,
    # so float32 rounding that differs between the batched and the single matmuls grows with lr (3e-3: 1.4e-6)
    data = jnp.asarray(np.random.default_rng(0).integers(0, TINY.vocab_size, 4000), jnp.int32)

    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])  # (4, 2)
    states = jax.jit(jax.vmap(lambda k: jaxgpt.create_state(TINY, tc, key=k)))(keys)  # one program, not op by op
    ensemble = jax.jit(jax.vmap(lambda s: jaxgpt.train_steps(s, data, TINY, tc, n_steps)))
    states, metrics = ensemble(states)
    assert metrics["loss"].shape == (len(seeds), n_steps)
    members, losses = jax.tree.map(np.asarray, states.params), np.asarray(metrics["loss"])  # compared on the host

    # each twin made from its seed alone (create_state's docstring: key=PRNGKey(s) is what seed=s makes; its
    # init_params is the compiled program every TINY test shares) and trained by one 10-step program for the four
    twin_steps = jax.jit(lambda s: jaxgpt.train_steps(s, data, TINY, tc, n_steps))
    worst = 0.0
    for i, seed in enumerate(seeds):
        twin, twin_metrics = twin_steps(jaxgpt.create_state(TINY, replace(tc, seed=seed)))
        diffs = jax.tree.map(lambda a, b: float(np.max(np.abs(a[i] - np.asarray(b)))), members, twin.params)
        worst = max(worst, *jax.tree.leaves(diffs))
        np.testing.assert_allclose(losses[i], twin_metrics["loss"], atol=1e-6, rtol=0)
    print(f"largest difference between an ensemble member and its twin: {worst:.2e}")
    assert worst <= 1e-6, f"an ensemble member is {worst} from its twin"
    # and the members really differ: 4 seeds, 4 models
    assert np.max(np.abs(members["ln_f"]["scale"][0] - members["ln_f"]["scale"][1])) > 0


def test_loss_fn_per_token_is_the_unreduced_mean():
    params = jaxgpt.init_params(TINY, jax.random.PRNGKey(0))
    x = jax.random.randint(jax.random.PRNGKey(1), (8, TINY.block_size), 0, TINY.vocab_size)
    both = jax.jit(lambda p: (jaxgpt.loss_fn(p, TINY, x, x, per_token=True), jaxgpt.loss_fn(p, TINY, x, x)))
    per_token, mean = both(params)  # one compiled program
    assert per_token.shape == x.shape
    np.testing.assert_allclose(per_token.mean(), mean, rtol=1e-6)
