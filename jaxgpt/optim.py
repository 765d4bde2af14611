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
q, k, v, o matrices. Embeddings, lm_head, gains, biases and LoRA adapters stay with AdamW. Batching all matrices of
one shape into one Newton-Schulz call instead (bench/muon_cost.py) was measured no faster on a 2-core CPU
(docs/speed.md, issue 24). `TrainConfig.muon_ns_steps` and `muon_ns_coeffs` choose the iteration: optax's quintic
5 times (the default) or fewer steps of Polar Express's per-step polynomials (docs/speed.md).
"""
from __future__ import annotations

import jax
import optax
from optax.contrib import MuonDimensionNumbers, scale_by_muon
from optax.contrib._muon import scale_by_shape  # not re-exported in optax 0.2.8; optax.contrib.muon uses it

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


def muon(learning_rate, momentum: float, ns_steps: int = 5, ns_coeffs: str = "quintic") -> optax.GradientTransformation:
    """Muon on leaves whose dimension numbers are known (use inside multi_transform with `labels`); `ns_coeffs`
    "quintic" runs QUINTIC `ns_steps` times, "polar_express" the first `ns_steps` sets of POLAR_EXPRESS."""
    coeffs = dict(ns_coeffs=QUINTIC, ns_steps=ns_steps) if ns_coeffs == "quintic" else \
        dict(ns_coeffs=POLAR_EXPRESS[:ns_steps])
    return optax.chain(
        scale_by_muon(beta=momentum, nesterov=True, weight_dimension_numbers=_masked_dimension_numbers, **coeffs),
        scale_by_shape(weight_dimension_numbers=_masked_dimension_numbers),  # sqrt(max(1, fan_out / fan_in))
        optax.scale_by_learning_rate(learning_rate))


def muon_adamw(muon_lr, momentum: float, adamw: optax.GradientTransformation, ns_steps: int = 5,
               ns_coeffs: str = "quintic") -> optax.GradientTransformation:
    """Muon at `muon_lr` on the Block matrices, `adamw` (with its own learning rate and masks) on the rest."""
    return optax.multi_transform({"muon": muon(muon_lr, momentum, ns_steps, ns_coeffs), "adamw": adamw}, labels)
