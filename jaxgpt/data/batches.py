"""Token arrays into training and evaluation batches: the 90/10 split, the lecture's get_batch on the device, and
the non-overlapping windows of a full evaluation pass."""
from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import DataError


def train_val_split(tokens: np.ndarray, block_size: int, train_frac: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """The lecture's split: first 90% train, last 10% validation. Each must hold one (x, y) window."""
    n = int(train_frac * len(tokens))
    return check_splits(tokens[:n], tokens[n:], block_size)


def check_splits(train: np.ndarray, val: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) when each holds one (x, y) window of block_size tokens; DataError naming the short one."""
    for name, part in (("train", train), ("val", val)):
        if len(part) < block_size + 1:
            raise DataError(f"the {name} split has {len(part)} tokens, fewer than block_size + 1 = {block_size + 1}; "
                            f"use a longer text or a smaller block_size")
    return train, val


def bits_per_char(loss: float, tokens: int, chars: int) -> float:
    """A loss in nats per token as bits per character of the text the tokens encode (docs/data.md): the unit that
    compares tokenizers. For characters tokens == chars, so 1.53 nats = 2.21 bits."""
    return loss * tokens / chars / math.log(2)


def split_text(text: str, train_frac: float = 0.9) -> tuple[str, str]:
    """The split of a subword run: the first 90% of the characters train, the rest validate, each encoded on its own
    (nanoGPT's data/shakespeare/prepare.py). For characters it equals `train_val_split` of the ids."""
    n = int(train_frac * len(text))
    return text[:n], text[n:]


def split(tokens: np.ndarray, block_size: int, train_frac: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Deprecated name of `train_val_split` (it read like `jax.random.split`)."""
    warnings.warn("jaxgpt.split is deprecated: use jaxgpt.train_val_split", DeprecationWarning, stacklevel=2)
    return train_val_split(tokens, block_size, train_frac)


def sample_batch(data: jax.Array, key: jax.Array, *legacy: int, batch_size: int | None = None,
                 block_size: int | None = None) -> tuple[jax.Array, jax.Array]:
    """The lecture's get_batch, on the device: batch_size random windows x of block_size tokens from data (N,) and
    their next-token targets y, each (B, T) int32. The sizes are keyword-only (a swap would go unnoticed)."""
    if legacy:  # sample_batch(data, key, B, T), the form before 0.2
        warnings.warn("sample_batch(data, key, B, T) is deprecated: pass batch_size=B, block_size=T",
                      DeprecationWarning, stacklevel=2)
        batch_size, block_size = legacy
    ix = jax.random.randint(key, (batch_size,), 0, data.shape[0] - block_size)
    offsets = ix[:, None] + jnp.arange(block_size + 1)[None, :]  # (B, T+1)
    window = data[offsets].astype(jnp.int32)
    return window[:, :-1], window[:, 1:]


def eval_windows(tokens: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut a split into non-overlapping windows so every target after the first token is scored exactly once.

    Returns x, y (N, T) and a 0/1 weight mask (N, T): the last window is padded and its padding weighs 0.
    """
    n_targets = len(tokens) - 1
    n = -(-n_targets // block_size)
    pad = n * block_size - n_targets
    x = np.concatenate([tokens[:-1], np.zeros(pad, tokens.dtype)]).reshape(n, block_size).astype(np.int32)
    y = np.concatenate([tokens[1:], np.zeros(pad, tokens.dtype)]).reshape(n, block_size).astype(np.int32)
    w = np.concatenate([np.ones(n_targets, np.float32), np.zeros(pad, np.float32)]).reshape(n, block_size)
    return x, y, w
