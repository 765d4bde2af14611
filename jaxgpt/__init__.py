"""jaxgpt: language models on characters or subword tokens, from a bigram table to a GPT, the functional JAX/Flax way.

The public API is `__all__`, by theme (each name's `help()` has its signature, shapes and an example):

- configs and presets: `GPTConfig` (the model), `TrainConfig` (the run), `NGramConfig`, `apply_overrides`
  (`key=value` strings), `get_preset(name)` -> `Preset` (`.doc`, `.model`, `.train`), `PRESETS` (name -> Preset)
- data: `load_text` (a path, URL, `hf:NAME` or "tinyshakespeare"), `CharTokenizer`, `train_val_split`,
  `sample_batch` (x, y) (B, T), `eval_windows`
- the model: `build_model(config)` -> a flax Module, `init_params(config, key)` -> params, `loss_fn` (mean or
  per token), `cross_entropy`, `count_params`
- training: `create_state(mc, tc, params=None, key=None)` -> `TrainState`, `train_step`, `train_steps` (n steps
  in one program, composes with jit / vmap / grad), `train_steps_jit` (the loop's compiled step, donates the
  state), `make_optimizer`, `make_keys`, `estimate_loss`, `evaluate_full`
- sampling: `generate` (temperature 0 = greedy, top_k, top_p), `generate_stream`, `beam_search`
- checkpoints: `load_checkpoint(out_dir)` -> (config, params, tokenizer)
- errors, all `ValueError`s: `JaxgptError` and `ConfigError`, `DataError`, `CheckpointError`, `RunError`,
  `ShardingError`, `UsageError`

Beside them: `jaxgpt.interop` (PyTorch / nanoGPT / Hugging Face weights in and out), `jaxgpt.model` (the Flax
modules `GPTLanguageModel`, `BigramLanguageModel`, `Block`, `MultiHeadAttention`, `Head`, `FeedForward`, also
importable from `jaxgpt`; left out of `__all__` so that `help(jaxgpt)` is not their inherited Module methods),
`jaxgpt.lora`, `jaxgpt.ngram`, `jaxgpt.sharding`. Everything else is internal and may change. The API page:
docs/api.md.

Example::

    import jax, jaxgpt
    config = jaxgpt.GPTConfig(vocab_size=65, n_layer=2, n_embd=64, n_head=4, block_size=32)
    params = jaxgpt.init_params(config, jax.random.PRNGKey(0))
    print(jaxgpt.count_params(params))
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
    """The deprecated names above still work for one release, with a DeprecationWarning naming the new one."""
    if name in _DEPRECATED:
        instead, get = _DEPRECATED[name]
        _warnings.warn(f"jaxgpt.{name} is deprecated; use {instead}", DeprecationWarning, stacklevel=2)
        return get()
    raise AttributeError(f"module 'jaxgpt' has no attribute {name!r}")
