"""jaxgpt: character-level language models from a bigram table to a GPT, the functional JAX/Flax way."""
from .config import PRESETS, ConfigError, GPTConfig, TrainConfig, apply_overrides, get_preset
from .data import CharTokenizer, DataError, eval_windows, load_text, sample_batch, split
from .model import (Block, BigramLanguageModel, FeedForward, GPTLanguageModel, Head, MultiHeadAttention,
                    build_model, count_params, cross_entropy, init_cache, init_params, loss_fn)
from .checkpoint import load_checkpoint
from .sampling import generate
from .training import (TrainState, create_state, estimate_loss, evaluate_full, make_keys, make_optimizer,
                       train_step, train_steps, train_steps_jit)

__all__ = [
    "PRESETS", "ConfigError", "GPTConfig", "TrainConfig", "apply_overrides", "get_preset",
    "CharTokenizer", "DataError", "eval_windows", "load_text", "sample_batch", "split",
    "Block", "BigramLanguageModel", "FeedForward", "GPTLanguageModel", "Head", "MultiHeadAttention",
    "build_model", "count_params", "cross_entropy", "init_cache", "init_params", "loss_fn",
    "generate", "load_checkpoint",
    "TrainState", "create_state", "estimate_loss", "evaluate_full", "make_keys", "make_optimizer",
    "train_step", "train_steps", "train_steps_jit",
]
