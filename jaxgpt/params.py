"""The parameter tree's layout, known in one place: which leaves are LoRA adapters, which carry the stacked layer
axis, how many numbers a tree holds, and how two trees of the same model differ.

Blocks are stacked on a leading n_layer axis under `blocks` (model.GPTLanguageModel); LoRA adapters are the leaves
`lora_a` / `lora_b` of an adapted Dense (model.Dense).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import jax

from .errors import CheckpointError

LAYER_STACK = "blocks"          # the subtree whose leaves carry a leading n_layer axis
ADAPTERS = ("lora_a", "lora_b")
Params = Mapping[str, Any]  # the "params" collection: nested dicts of jax.Array leaves (a pytree)


def _keys(path) -> list:
    return [getattr(k, "key", None) for k in path]


def is_lora(path, _=None) -> bool:
    """A LoRA adapter leaf (usable as `tree_map_with_path(is_lora, params)`)."""
    return any(k in ADAPTERS for k in _keys(path))


def is_layer_stacked(path) -> bool:
    """A leaf under `blocks`: its leading axis is the layer, not part of the weight."""
    return LAYER_STACK in _keys(path)


def count_params(params: Params) -> int:
    """How many numbers a params tree holds."""
    return sum(int(p.size) for p in jax.tree.leaves(params))


def _flat(tree) -> dict:
    return {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def mismatches(expected, got, may_be_missing: Callable[[str], bool] = lambda key: False) -> list[str]:
    """How `got` (e.g. a checkpoint's tree) fails to fit `expected` (the model's): one phrase per leaf that is
    missing, extra or of another shape. Both trees may hold arrays or shape-only structs."""
    want, have = _flat(expected), _flat(got)
    problems = [f"{k} is {tuple(have[k].shape)} in the checkpoint but {tuple(v.shape)} in the model"
                for k, v in want.items() if k in have and tuple(have[k].shape) != tuple(v.shape)]
    problems += [f"{k} is missing from the checkpoint" for k in want if k not in have and not may_be_missing(k)]
    problems += [f"{k} is in the checkpoint but not in the model" for k in have if k not in want]
    return problems


def mismatch_error(where: str, problems: list[str]) -> CheckpointError:
    """The error for `mismatches`: the first three phrases and how many more."""
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return CheckpointError(f"{where} does not fit this model: {'; '.join(problems[:3])}{more}")


def merge_params(loaded, fresh, source: str):
    """`fresh` with every leaf taken from `loaded` (cast to fresh's dtype); leaves only `fresh` has may be LoRA
    adapters (kept as initialised). Any other missing leaf, extra leaf or shape difference raises CheckpointError
    naming it."""
    problems = mismatches(fresh, loaded, may_be_missing=lambda key: any(a in key for a in ADAPTERS))
    if problems:
        raise mismatch_error(f"the checkpoint in {source}", problems)
    have = _flat(loaded)
    return jax.tree_util.tree_map_with_path(
        lambda path, x: have[jax.tree_util.keystr(path)].astype(x.dtype) if jax.tree_util.keystr(path) in have else x,
        fresh)
