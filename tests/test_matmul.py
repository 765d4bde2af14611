"""layers.matmul, the product every Dense layer runs: autodiff's gradients (the input's bit for bit, the weight's to
float32 rounding), a weight gradient that XLA's CPU backend gives to YNNPACK instead of Eigen, and autodiff's own
contraction on other platforms."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgpt.layers import matmul

# (x, w): fc-like (the input narrower: x^T is materialised), proj-like (the gradient narrower), 2-D, decode (T = 1)
SHAPES = [((12, 64, 128), (128, 512)), ((12, 64, 512), (512, 128)), ((768, 128), (128, 384)), ((3, 1, 16), (16, 8))]


def grads(mm, x, w):
    return jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.sin(mm(x, w))), argnums=(0, 1)))(x, w)


@pytest.mark.parametrize("xs, ws", SHAPES)
def test_gradients_equal_autodiffs(xs, ws):
    rng = np.random.default_rng(len(xs))
    x, w = (jnp.asarray(rng.normal(size=s).astype(np.float32)) for s in (xs, ws))
    np.testing.assert_array_equal(jax.jit(matmul)(x, w), x @ w)
    (dx, dw), (dx0, dw0) = grads(matmul, x, w), grads(jnp.matmul, x, w)
    np.testing.assert_array_equal(dx, dx0)
    np.testing.assert_allclose(dw, dw0, rtol=0, atol=2e-6 * float(jnp.max(jnp.abs(dw0))))  # summation order only


def entry_dots(f, *args) -> tuple[int, int]:
    """(Eigen dots, YNNPACK fusions) in the compiled program's entry computation."""
    hlo = jax.jit(f).lower(*args).compile().as_text()
    entry = hlo[hlo.index("ENTRY"):]
    return len(re.findall(r"\} dot\(", entry)), len(re.findall(r"%ynn_fusion[.\d]* = .* fusion\(", entry))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA's CPU dot libraries")
@pytest.mark.parametrize("xs, ws", SHAPES[:2])
def test_the_weight_gradient_is_a_ynnpack_product_on_cpu(xs, ws):
    x, w = jnp.ones(xs, jnp.float32), jnp.ones(ws, jnp.float32)
    dw = lambda mm: (lambda x, w: jax.grad(lambda w: jnp.sum(jnp.sin(mm(x, w))))(w))
    assert entry_dots(dw(jnp.matmul), x, w)[0] == 1  # autodiff's x^T g: Eigen (why matmul exists)
    assert entry_dots(dw(matmul), x, w) == (0, 2)  # ours: the forward and the weight gradient, both YNNPACK


def test_other_platforms_keep_autodiffs_contraction():
    x, w = jnp.ones((4, 8, 16), jnp.float32), jnp.ones((16, 32), jnp.float32)
    f = jax.jit(jax.grad(lambda x, w: jnp.sum(matmul(x, w)), argnums=1))
    lowered = lambda platform: f.trace(x, w).lower(lowering_platforms=(platform,)).as_text()
    assert "optimization_barrier" in lowered("cpu")
    assert "optimization_barrier" not in lowered("tpu")
    assert "optimization_barrier" not in lowered("cuda")
