"""Muon for the Blocks' weight matrices, AdamW for everything else (`TrainConfig.optimizer = "muon"`).

Muon (Jordan et al. 2024, github.com/KellerJordan/Muon; modded-nanogpt) replaces each 2-D update with the nearest
semi-orthogonal matrix of its Nesterov momentum, found by 5 Newton-Schulz steps with the quintic coefficients
(3.4445, -4.775, 2.0315), then scales it by sqrt(max(1, fan_out / fan_in)). The singular values come out between
about 0.5 and 1.5, not exactly 1: the quintic trades accuracy for speed (modded-nanogpt's comment says so).
`optax.contrib.scale_by_muon` does that computation; what is jaxgpt's is which axes form the matrix.

jaxgpt's Block weights are stacked on a leading layer axis and keep their heads as axes of their own, so optax's
default (every 2-D leaf is a matrix) would orthogonalise the embeddings and lm_head and leave the Blocks to Adam.
`muon_dimension_numbers` names each Block kernel's (in, out) axes instead; the layer axis (and the q/k/v axis of
`qkv`) are batch axes, orthogonalised one matrix at a time as modded-nanogpt does with its separate
q, k, v, o matrices. Embeddings, lm_head, gains, biases and LoRA adapters stay with AdamW.

Newton-Schulz runs once per matrix shape, not once per leaf (`orthogonalize_by_shape`): every Block matrix of the
same (short side, long side) shape, across leaves, goes into one batched iteration (`baby`: 16 of 128 x 128 and 8 of
128 x 512), the same arithmetic per matrix as optax's vmapped per-leaf loop (tests/test_muon_batched.py). On a 2-core
CPU it measured no faster (the work is ~2.5 GFLOP of matmuls a step either way; docs/speed.md, issue 24).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax.contrib import MuonDimensionNumbers, scale_by_muon
# not re-exported in optax 0.2.8; optax.contrib.muon and orthogonalize_via_newton_schulz use them
from optax.contrib._muon import _compute_muon_reshape, scale_by_shape

from .params import ADAPTERS, is_layer_stacked

# Block kernels by their path's last two keys -> (reduction axes, output axes), layer axis 0 excluded
_MATRICES = {
    ("qkv", "kernel"): ((1,), (3, 4)),    # (L, C, 3, H, hs): q, k and v each a (C, H*hs) matrix
    ("proj", "kernel"): None,             # sa (L, H, hs, C) or ffwd (L, 4C, C): all but the last axis are the input
    ("fc", "kernel"): ((1,), (2,)),       # (L, C, 4C)
}


def _keys(path) -> tuple:
    return tuple(getattr(k, "key", None) for k in path)


def dimension_numbers(path, leaf) -> MuonDimensionNumbers | None:
    """The (in, out) axes of a Block kernel, or None for a leaf that AdamW trains."""
    keys = _keys(path)
    if not is_layer_stacked(path) or any(a in keys for a in ADAPTERS) or keys[-2:] not in _MATRICES:
        return None
    axes = _MATRICES[keys[-2:]]
    if axes is None:
        axes = (tuple(range(1, leaf.ndim - 1)), (leaf.ndim - 1,))
    return MuonDimensionNumbers(reduction_axis=axes[0], output_axis=axes[1])


def labels(params):
    """"muon" or "adamw" for each leaf of a params tree (usable as optax.multi_transform's param_labels)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, x: "adamw" if dimension_numbers(path, x) is None else "muon", params)


def _masked_dimension_numbers(updates):
    """Dimension numbers for the Muon half of a multi_transform: its non-Muon leaves are optax.MaskedNode."""
    is_masked = lambda x: isinstance(x, optax.MaskedNode)
    return jax.tree_util.tree_map_with_path(lambda path, x: x if is_masked(x) else dimension_numbers(path, x),
                                            updates, is_leaf=is_masked)


NS_STEPS = 5  # modded-nanogpt's and optax's Newton-Schulz steps (quintic: optax's default coefficients); read when
             # the step is traced (bench/muon_ns_screen.py sets it to screen fewer steps)


def newton_schulz(x, coeffs, steps: int = NS_STEPS):
    """`steps` quintic Newton-Schulz iterations on a batch of (m, n) matrices, m <= n, already Frobenius-normalised:
    X <- a X + (b A + c A A) X with A = X X^T (optax's _base_newton_schulz_iteration, batched)."""
    coeffs = coeffs.astype(x.dtype)
    for _ in range(steps):
        A = x @ jnp.swapaxes(x, -1, -2)  # (N, m, m)
        B = coeffs[1] * A + coeffs[2] * A @ A
        x = coeffs[0] * x + B @ x  # (N, m, n)
    return x


def orthogonalize_by_shape(updates, dims, coeffs, steps: int = NS_STEPS):
    """Newton-Schulz on every matrix of `updates` (leaves split into matrices by `dims`, a tree of
    MuonDimensionNumbers), one batched iteration per (m, n) shape with the short side first."""
    leaves, treedef = jax.tree.flatten(updates)
    dim_list = jax.tree.leaves(dims, is_leaf=lambda d: isinstance(d, MuonDimensionNumbers))
    mats, undo, groups = [], [], {}
    for x, d in zip(leaves, dim_list, strict=True):
        reshape, inverse = _compute_muon_reshape(x, d)
        m = reshape(x)  # (N, fan_in, fan_out)
        flip = m.shape[1] > m.shape[2]
        mats.append(jnp.swapaxes(m, 1, 2) if flip else m)
        undo.append((inverse, flip))
        groups.setdefault(mats[-1].shape[1:], []).append(len(mats) - 1)
    out = [None] * len(mats)
    for idx in groups.values():
        sizes = np.cumsum([mats[i].shape[0] for i in idx])[:-1]
        y = newton_schulz(jnp.concatenate([mats[i] for i in idx]), coeffs, steps)
        for i, part in zip(idx, jnp.split(y, sizes)):
            out[i] = part
    return jax.tree.unflatten(treedef, [inv(jnp.swapaxes(o, 1, 2) if flip else o)
                                        for o, (inv, flip) in zip(out, undo)])


def scale_by_muon_by_shape(momentum: float, dimension_numbers) -> optax.GradientTransformation:
    """optax's scale_by_muon (Nesterov, its state unchanged, so old checkpoints restore) with its Newton-Schulz
    batched by shape: optax runs with ns_steps=0 (momentum and Frobenius normalisation per matrix), then
    `orthogonalize_by_shape` runs the NS_STEPS iterations."""
    inner = scale_by_muon(beta=momentum, nesterov=True, ns_steps=0, weight_dimension_numbers=dimension_numbers)

    def update(updates, state, params=None):
        normalised, state = inner.update(updates, state, params)
        return orthogonalize_by_shape(normalised, dimension_numbers(normalised), state.ns_coeffs, NS_STEPS), state

    return optax.GradientTransformation(inner.init, update)


def muon(learning_rate, momentum: float) -> optax.GradientTransformation:
    """Muon on leaves whose dimension numbers are known (use inside multi_transform with `labels`)."""
    return optax.chain(
        scale_by_muon_by_shape(momentum, _masked_dimension_numbers),
        scale_by_shape(weight_dimension_numbers=_masked_dimension_numbers),  # sqrt(max(1, fan_out / fan_in))
        optax.scale_by_learning_rate(learning_rate))


def muon_adamw(muon_lr, momentum: float, adamw: optax.GradientTransformation) -> optax.GradientTransformation:
    """Muon at `muon_lr` on the Block matrices, `adamw` (with its own learning rate and masks) on the rest."""
    return optax.multi_transform({"muon": muon(muon_lr, momentum), "adamw": adamw}, labels)
