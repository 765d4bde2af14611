"""jaxgpt: character-level language models from a bigram table to a GPT, the functional JAX/Flax way.

The public API is `__all__` (README, "Use as a library"): configs and presets, data, the models, training and
evaluation, sampling, checkpoints, and the error types. Everything else is internal and may change.
"""
import warnings as _warnings

from .config import GPTConfig, NGramConfig, TrainConfig, apply_overrides
from .presets import PRESETS, Preset, get_preset
from .data import CharTokenizer, eval_windows, load_text, sample_batch, train_val_split
from .errors import CheckpointError, ConfigError, DataError, JaxgptError, RunError, ShardingError, UsageError
from .model import (Block, BigramLanguageModel, FeedForward, GPTLanguageModel, Head, MultiHeadAttention,
                    build_model, cross_entropy, init_params, loss_fn)
from .params import count_params
from .checkpoint import load_checkpoint
from .sampling import beam_search, generate, generate_stream
from .training import (TrainState, create_state, estimate_loss, evaluate_full, make_keys, make_optimizer,
                       train_step, train_steps, train_steps_jit)

__all__ = [
    "PRESETS", "GPTConfig", "NGramConfig", "Preset", "TrainConfig", "apply_overrides", "get_preset",
    "CharTokenizer", "eval_windows", "load_text", "sample_batch", "train_val_split",
    "JaxgptError", "CheckpointError", "ConfigError", "DataError", "RunError", "ShardingError", "UsageError",
    "Block", "BigramLanguageModel", "FeedForward", "GPTLanguageModel", "Head", "MultiHeadAttention",
    "build_model", "count_params", "cross_entropy", "init_params", "loss_fn",
    "beam_search", "generate", "generate_stream", "load_checkpoint",
    "TrainState", "create_state", "estimate_loss", "evaluate_full", "make_keys", "make_optimizer",
    "train_step", "train_steps", "train_steps_jit",
]

# Names that were public before 0.2 and keep working, with a warning, for one release.
_DEPRECATED = {
    "split": ("train_val_split", lambda: train_val_split),
    "init_cache": ("nothing public (the cache is internal to `generate`)", lambda: __import__(
        "jaxgpt.model", fromlist=["init_cache"]).init_cache),
}


def __getattr__(name):
    if name in _DEPRECATED:
        instead, get = _DEPRECATED[name]
        _warnings.warn(f"jaxgpt.{name} is deprecated; use {instead}", DeprecationWarning, stacklevel=2)
        return get()
    raise AttributeError(f"module 'jaxgpt' has no attribute {name!r}")
