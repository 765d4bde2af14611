"""The modern recipe's small pieces, as pure functions on arrays: RMSNorm, rotary positions, ReLU^2, logit soft-cap;
the loss they are all trained on, `cross_entropy` (`jaxgpt.model` re-exports it); and `matmul`, the product every
Dense layer runs, with a backward that suits CPU dot libraries.

Each is a switch in `GPTConfig` (default: off, today's lecture / nanoGPT behaviour); `model.py` calls them. References:
- RMSNorm: Zhang & Sennrich (2019), "Root Mean Square Layer Normalization" (LLaMA, modded-nanogpt).
- rotary position embeddings: Su et al. (2021), "RoFormer" (GPT-NeoX's half-split layout, as in LLaMA/modded-nanogpt).
- QK-norm: Henry et al. (2020), "Query-Key Normalization for Transformers"; RMS form as in modded-nanogpt.
- ReLU^2: So et al. (2021), "Primer: Searching for Efficient Transformers for Language Modeling".
- logit soft-capping: Gemma 2 (2024), cap * tanh(logits / cap); modded-nanogpt caps its logits too.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax
from jax import lax

ROPE_BASE = 10000.0  # RoFormer's base wavelength


def rms_norm(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """x / sqrt(mean(x^2) + eps) over the last axis, in float32, with no gain (the gain is the module's)."""
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps)


def rope_angles(positions: jax.Array, head_size: int, base: float = ROPE_BASE) -> tuple[jax.Array, jax.Array]:
    """cos and sin of position * base^(-2i/hs) for i < hs/2, at absolute `positions` (T,): each (T, hs/2)."""
    inv_freq = base ** (-jnp.arange(0, head_size, 2, dtype=jnp.float32) / head_size)  # (hs/2,)
    angles = jnp.asarray(positions, jnp.float32)[:, None] * inv_freq[None, :]  # (T, hs/2)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, positions: jax.Array) -> jax.Array:
    """Rotate each pair (x[..., i], x[..., i + hs/2]) of x (B, T, H, hs) by its position's angle (RoFormer).

    q_m . k_n after rotation depends on m - n only, so a key cached at its absolute position stays valid."""
    hs = x.shape[-1]
    cos, sin = rope_angles(positions, hs)
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]  # (1, T, 1, hs/2)
    x1, x2 = x[..., : hs // 2].astype(jnp.float32), x[..., hs // 2:].astype(jnp.float32)
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).astype(x.dtype)


def sinusoidal_positions(block_size: int, n_embd: int) -> jax.Array:
    """Vaswani et al. (2017): sin on even channels, cos on odd, wavelengths up to 10000 * 2pi. (T, C)"""
    pos = jnp.arange(block_size)[:, None]
    freq = jnp.exp(-math.log(10000.0) * jnp.arange(0, n_embd, 2) / n_embd)[None, :]
    return jnp.stack([jnp.sin(pos * freq), jnp.cos(pos * freq)], axis=-1).reshape(block_size, n_embd)


def relu2(x: jax.Array) -> jax.Array:
    """ReLU(x)^2 (Primer)."""
    return jnp.square(jax.nn.relu(x))


def soft_cap(logits: jax.Array, cap: float) -> jax.Array:
    """cap * tanh(logits / cap): smooth, bounded to (-cap, cap); cap <= 0 leaves the logits as they are."""
    return cap * jnp.tanh(logits / cap) if cap > 0 else logits


def cross_entropy(logits: jax.Array, targets: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """Mean cross-entropy in float32 (the lecture's F.cross_entropy); `weights` masks padded targets."""
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
    if weights is None:
        return losses.mean()
    return (losses * weights).sum() / jnp.maximum(weights.sum(), 1.0)


@jax.custom_vjp
def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """x @ w for a 2-D w, whose weight gradient on CPU is a plain product of a materialised transpose.

    Autodiff's x^T g contracts the token axes of both operands. XLA's CPU backend gives that form to Eigen, not
    YNNPACK, after a transposing copy of the wider operand (ffwd's (tokens, 4C) gradient for fc); transposing the
    narrower operand ourselves and keeping XLA from folding it back makes every weight gradient a (k, m) @ (m, n)
    YNNPACK product: 0.88x the time of nanoGPT's CPU step and 0.89x of `baby`'s on the Intel class (docs/speed.md,
    "Round 4"). Other platforms keep autodiff's contraction, which their dot units take without a copy."""
    return x @ w


def _matmul_fwd(x, w):
    return x @ w, (x, w)


def _weight_grad_cpu(x, g):  # (N, k), (N, n) -> (k, n); each barrier keeps XLA from folding a transpose into the dot
    if x.shape[1] <= g.shape[1]:
        return lax.optimization_barrier(x.T) @ g
    return lax.optimization_barrier(lax.optimization_barrier(g.T) @ x).T  # (n, k) -> (k, n): a weight-sized copy


def _matmul_bwd(res, g):
    x, w = res
    dw = lax.platform_dependent(x.reshape(-1, w.shape[0]), g.reshape(-1, w.shape[1]), cpu=_weight_grad_cpu,
                                default=lambda x2, g2: lax.dot_general(x2, g2, (((0,), (0,)), ((), ()))))
    return g @ w.T, dw.astype(w.dtype)


matmul.defvjp(_matmul_fwd, _matmul_bwd)
