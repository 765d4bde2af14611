"""Muon for the Blocks' weight matrices, AdamW for everything else (`TrainConfig.optimizer = "muon"`).

Muon (Jordan et al. 2024, github.com/KellerJordan/Muon; modded-nanogpt) replaces each 2-D update with the nearest
semi-orthogonal matrix of its Nesterov momentum, found by 5 Newton-Schulz steps with the quintic coefficients
(3.4445, -4.775, 2.0315), then scales it by sqrt(max(1, fan_out / fan_in)). The singular values come out between
about 0.5 and 1.5, not exactly 1: the quintic trades accuracy for speed (modded-nanogpt's comment says so).
The momentum and state are optax.contrib.scale_by_muon's; the Newton-Schulz loop is jaxgpt's own (`newton_schulz`),
unrolled with its coefficients as constants, because optax runs a per-step table (Polar Express) as a lax.scan.

jaxgpt's Block weights are stacked on a leading layer axis and keep their heads as axes of their own, so optax's
default (every 2-D leaf is a matrix) would orthogonalise the embeddings and lm_head and leave the Blocks to Adam.
`dimension_numbers` names each Block kernel's (in, out) axes instead; the layer axis (and the q/k/v axis of
`qkv`) are batch axes, orthogonalised one matrix at a time as modded-nanogpt does with its separate
q, k, v, o matrices. Embeddings, lm_head, gains, biases and LoRA adapters stay with AdamW. Batching all matrices of
one shape into one Newton-Schulz call instead (bench/muon_cost.py) was measured no faster on a 2-core CPU
(docs/speed.md, issue 24). `TrainConfig.muon_ns_steps` and `muon_ns_coeffs` choose the iteration: the quintic 5
times (the default, bit for bit optax's on square matrices; a wide one runs the same polynomial on its Gram matrix,
`newton_schulz`) or fewer steps of Polar Express's per-step polynomials; `muon_weight_decay` adds decoupled decay to
the matrices; `muon_per_head` orthogonalises q, k, v and attention's proj one head at a time (C x hs matrices: about
a quarter of the whole C x C matrix's time), scaled as the whole matrix; `muon_ns_dtype` bfloat16 rounds the
iteration's product inputs to bf16: 0.61x its float32 time for baby's leaves on the Intel class (docs/speed.md).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from optax._src.numerics import safe_increment
from optax.contrib import MuonDimensionNumbers, MuonState, scale_by_muon
# not re-exported in optax 0.2.8; optax.contrib.muon uses them
from optax.contrib._muon import _compute_muon_reshape, scale_by_shape

from .params import ADAPTERS, is_layer_stacked

# Block kernels by their path's last two keys -> (reduction axes, output axes), layer axis 0 excluded
_MATRICES = {
    ("qkv", "kernel"): ((1,), (3, 4)),    # (L, C, 3, H, hs): q, k and v each a (C, H*hs) matrix
    ("proj", "kernel"): None,             # sa (L, H, hs, C) or ffwd (L, 4C, C): all but the last axis are the input
    ("fc", "kernel"): ((1,), (2,)),       # (L, C, 4C)
}
# muon_per_head: each head's own matrix, the head axis a batch axis
_HEAD_MATRICES = {("qkv", "kernel", 5): ((1,), (4,)),   # (C, hs) for each of q, k, v and each head
                  ("proj", "kernel", 4): ((2,), (3,))}  # sa's (hs, C) for each head


def _keys(path) -> tuple:
    return tuple(getattr(k, "key", None) for k in path)


def dimension_numbers(path, leaf, per_head: bool = False) -> MuonDimensionNumbers | None:
    """The (in, out) axes of a Block kernel, or None for a leaf that AdamW trains; `per_head` splits attention's
    kernels into one matrix per head (TrainConfig.muon_per_head)."""
    keys = _keys(path)
    if not is_layer_stacked(path) or any(a in keys for a in ADAPTERS) or keys[-2:] not in _MATRICES:
        return None
    axes = _HEAD_MATRICES.get((*keys[-2:], leaf.ndim)) if per_head else None
    axes = axes or _MATRICES[keys[-2:]]
    if axes is None:
        axes = (tuple(range(1, leaf.ndim - 1)), (leaf.ndim - 1,))
    return MuonDimensionNumbers(reduction_axis=axes[0], output_axis=axes[1])


def labels(params):
    """"muon" or "adamw" for each leaf of a params tree (usable as optax.multi_transform's param_labels)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, x: "adamw" if dimension_numbers(path, x) is None else "muon", params)


def _masked_dimension_numbers(updates, per_head: bool = False):
    """Dimension numbers for the Muon half of a multi_transform: its non-Muon leaves are optax.MaskedNode."""
    is_masked = lambda x: isinstance(x, optax.MaskedNode)
    return jax.tree_util.tree_map_with_path(
        lambda path, x: x if is_masked(x) else dimension_numbers(path, x, per_head), updates, is_leaf=is_masked)


QUINTIC = (3.4445, -4.775, 2.0315)  # Jordan 2024: every step (optax's default)
# Amsel et al. 2025 ("The Polar Express", arXiv 2505.16932), as modded-nanogpt runs it: one set per step, the input
# divided by 1.02 x its Frobenius norm first. optax divides by the norm alone, so the 1.02 is folded into the first
# set: p(x / s) = (a / s) x + (b / s^3) x^3 + (c / s^5) x^5.
_SAFETY = 1.02
POLAR_EXPRESS = tuple((a / _SAFETY, b / _SAFETY ** 3, c / _SAFETY ** 5) if i == 0 else (a, b, c) for i, (a, b, c) in
                      enumerate(((8.156554524902461, -22.48329292557795, 15.878769915207462),
                                 (4.042929935166739, -2.808917465908714, 0.5000178451051316),
                                 (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
                                 (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
                                 (2.3465413258596377, -1.7097828382687081, 0.42323551169305323))))


def ns_table(ns_steps: int, ns_coeffs: str) -> tuple:
    """The (a, b, c) of each Newton-Schulz step: QUINTIC `ns_steps` times, or the first `ns_steps` POLAR_EXPRESS."""
    return (QUINTIC,) * ns_steps if ns_coeffs == "quintic" else POLAR_EXPRESS[:ns_steps]


def optax_ns_args(ns_steps: int, ns_coeffs: str) -> dict:
    """The same iteration as optax.contrib.scale_by_muon's arguments, as jaxgpt passed them before its own loop:
    the quintic as one set and a step count, Polar Express as its table. optax keeps them in its state (shape (3,)
    or (steps, 3)), so this is what keeps old run folders' optimizer states restorable."""
    return dict(ns_coeffs=QUINTIC, ns_steps=ns_steps) if ns_coeffs == "quintic" else \
        dict(ns_coeffs=POLAR_EXPRESS[:ns_steps])


def newton_schulz(x: jax.Array, dims: MuonDimensionNumbers, coeffs: tuple, dtype: str = "float32") -> jax.Array:
    """The matrices of one leaf (split by `dims`) orthogonalised: short side first, X / (|X|_F + 1e-8), then
    X <- a X + (b A + c A A) X with A = X X^T for each (a, b, c) in `coeffs`, the steps unrolled with the
    coefficients as constants (optax's per-step table is a lax.scan). A square-ish matrix runs the same operations
    as optax's orthogonalize_via_newton_schulz, in the same order; a wide one (long side >= 2 x short) runs them on
    its Gram matrix (`_gram_newton_schulz`), the same polynomial at float32 rounding.

    `dtype` bfloat16 rounds each product's inputs to bf16 and sums in f32 (modded-nanogpt runs Newton-Schulz in
    bf16): XLA's CPU dots take that form 4-5x faster than f32 on the Intel class (AMX), but run a product whose
    second operand is transposed (X X^T) in f32 after converting both. So with bf16 every matrix takes the Gram form
    in its own orientation, one transposed product per 3 steps: X is rebuilt (Q X) every 3 steps, since 5 steps of
    one Gram iteration in bf16 took an ill-conditioned matrix's largest singular value to 7-49,000 where float32
    gives 1.1-1.2 (docs/speed.md, round 10)."""
    reshape, inverse = _compute_muon_reshape(x, dims)
    m = reshape(x)  # (N, fan_in, fan_out)
    if dtype != "float32":
        m = m / (jnp.linalg.norm(m, axis=(1, 2), keepdims=True) + 1e-8)
        for i in range(0, len(coeffs), 3):  # bf16's rounding compounds in Q and A: 5 steps in one go can blow up
            m = _gram_newton_schulz(m, coeffs[i:i + 3], lambda y: y.astype(dtype), tall=m.shape[1] > m.shape[2])
        return inverse(m)
    flip = m.shape[1] > m.shape[2]
    if flip:
        m = m.swapaxes(1, 2)
    m = m / (jnp.linalg.norm(m, axis=(1, 2), keepdims=True) + 1e-8)
    if m.shape[2] >= 2 * m.shape[1]:
        m = _gram_newton_schulz(m, coeffs)
    else:
        for a, b, c in coeffs:
            A = m @ m.swapaxes(1, 2)  # (N, short, short)
            B = b * A + c * A @ A
            m = a * m + B @ m
    return inverse(m.swapaxes(1, 2) if flip else m)


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
    """a @ b summed in float32 (for float32 inputs exactly a @ b)."""
    return jnp.matmul(a, b, preferred_element_type=jnp.float32)


def _gram_newton_schulz(x: jax.Array, coeffs: tuple, cast=lambda y: y, tall: bool = False) -> jax.Array:
    """Newton-Schulz on wide matrices x (N, s, l) in s x s space (float32 runs it for s <= l / 2, bf16 products for
    s <= l; newton_schulz): every iterate is Q x with Q a polynomial in G = x x^T, so A = X X^T = Q G Q = Q Q G (all
    commute). A step is M = a I + b A + c A A, Q <- M Q, A <- M A M; x's long side is touched twice (G, then Q x),
    not twice a step: 2 s^2 l + 9 s^3 multiply-adds for 3 steps against 6 s^2 l + 3 s^3 (37% fewer for baby's
    128 x 512 matrices). A `tall` x (N, l, s) runs as its transpose without moving it: G = x^T x, then x Q (Q is
    symmetric). `cast` rounds each product's inputs (newton_schulz's dtype)."""
    xb = cast(x)
    A = _dot(xb.swapaxes(1, 2), xb) if tall else _dot(xb, xb.swapaxes(1, 2))  # (N, s, s)
    eye = jnp.eye(A.shape[1], dtype=x.dtype)
    q = None
    for i, (a, b, c) in enumerate(coeffs):
        M = cast(a * eye + b * A + _dot(cast(c * A), cast(A)))
        q = M if q is None else _dot(M, cast(q))
        if i + 1 < len(coeffs):
            A = _dot(M, cast(_dot(cast(A), M)))
    return _dot(xb, cast(q)) if tall else _dot(cast(q), xb)


def scale_by_muon_unrolled(beta: float, ns_steps: int, ns_coeffs: str, dimension_numbers,
                           ns_dtype: str = "float32") -> optax.GradientTransformation:
    """optax.contrib.scale_by_muon (Nesterov momentum with bias correction, then Newton-Schulz) with
    `newton_schulz` as the orthogonaliser; its state is optax's MuonState as before, so old run folders load."""
    init = scale_by_muon(beta=beta, nesterov=True, weight_dimension_numbers=dimension_numbers,
                         **optax_ns_args(ns_steps, ns_coeffs)).init
    coeffs = ns_table(ns_steps, ns_coeffs)
    is_dims = lambda d: isinstance(d, MuonDimensionNumbers)

    def update(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, beta, 1)
        count = safe_increment(state.count)
        mu_hat = jax.tree.map(lambda m, g: beta * m + (1 - beta) * g,
                              optax.tree.bias_correction(mu, beta, safe_increment(count)),
                              optax.tree.bias_correction(updates, beta, count))
        updates = jax.tree.map(lambda x, d: newton_schulz(x, d, coeffs, ns_dtype), mu_hat,
                               dimension_numbers(updates), is_leaf=is_dims)
        return updates, MuonState(count=count, mu=mu, ns_coeffs=state.ns_coeffs)

    return optax.GradientTransformation(init, update)


def muon(learning_rate, momentum: float, ns_steps: int = 5, ns_coeffs: str = "quintic",
         weight_decay: float = 0.0, per_head: bool = False, ns_dtype: str = "float32") -> optax.GradientTransformation:
    """Muon on leaves whose dimension numbers are known (use inside multi_transform with `labels`); `ns_coeffs`
    "quintic" runs QUINTIC `ns_steps` times, "polar_express" the first `ns_steps` sets of POLAR_EXPRESS;
    `weight_decay` > 0 adds decoupled decay, lr x weight_decay x W (Liu et al. 2025, modded-nanogpt); `per_head`
    orthogonalises attention's kernels one head at a time, scaled as the whole matrix would be; `ns_dtype` is the
    type Newton-Schulz's products read (`newton_schulz`)."""
    return optax.chain(
        scale_by_muon_unrolled(momentum, ns_steps, ns_coeffs,
                               functools.partial(_masked_dimension_numbers, per_head=per_head), ns_dtype),
        scale_by_shape(weight_dimension_numbers=_masked_dimension_numbers),  # sqrt(max(1, fan_out / fan_in))
        *([optax.add_decayed_weights(weight_decay)] if weight_decay else []),
        optax.scale_by_learning_rate(learning_rate))


def muon_adamw(muon_lr, momentum: float, adamw: optax.GradientTransformation, ns_steps: int = 5,
               ns_coeffs: str = "quintic", weight_decay: float = 0.0,
               per_head: bool = False, ns_dtype: str = "float32") -> optax.GradientTransformation:
    """Muon at `muon_lr` on the Block matrices, `adamw` (with its own learning rate and masks) on the rest."""
    return optax.multi_transform({"muon": muon(muon_lr, momentum, ns_steps, ns_coeffs, weight_decay, per_head,
                                               ns_dtype),
                                  "adamw": adamw}, labels)
