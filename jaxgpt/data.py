"""Text in, tokens out: the character tokenizer, the text loader, the 90/10 split and batch sampling."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.request
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .errors import DataError

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
DOWNLOAD_TIMEOUT_S = 60  # seconds per socket operation (connect, each read), not for the whole file


class CharTokenizer:
    """The lecture's stoi/itos: the sorted unique characters of the training text."""

    def __init__(self, chars: str | list[str]):
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        if len(self.stoi) != len(self.chars):
            raise ValueError("tokenizer characters must be unique")

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @property
    def dtype(self) -> np.dtype:
        """The smallest unsigned integer type that holds every token id."""
        return np.dtype(np.uint8 if self.vocab_size <= 256 else np.uint16 if self.vocab_size <= 65536 else np.uint32)

    def encode(self, text: str) -> np.ndarray:
        try:
            return np.fromiter((self.stoi[c] for c in text), dtype=self.dtype, count=len(text))
        except KeyError:
            unknown = sorted(set(text) - self.stoi.keys())
            shown = ", ".join(repr(c) for c in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise ValueError(f"text has {len(unknown)} character(s) not in the vocabulary: {shown}") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))

    def to_json(self) -> str:
        return json.dumps({"chars": self.chars})

    @classmethod
    def from_json(cls, text: str) -> "CharTokenizer":
        return cls(json.loads(text)["chars"])


def cache_dir() -> Path:
    return Path(os.environ.get("JAXGPT_CACHE_DIR") or Path.home() / ".cache" / "jaxgpt")


def _read_utf8(path: Path, source: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{source} is not UTF-8 text (byte {e.start}: {e.reason}); convert it to UTF-8") from None
    except IsADirectoryError:
        raise DataError(f"{source} is a directory, not a text file") from None
    except OSError as e:  # unreadable (permissions), a broken link, a device error
        raise DataError(f"cannot read {source}: {e.strerror or e}") from None
    if not text:
        raise DataError(f"{source} is empty; give a text with at least a few thousand characters")
    return text


def _download(url: str, dest: Path) -> None:
    """Fetch url into dest atomically: a temp file in the same folder, renamed only when complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as r:
            while chunk := r.read(1 << 16):
                f.write(chunk)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _url_cache_path(url: str) -> Path:
    name = url.rstrip("/").rsplit("/", 1)[-1] or "index"
    return cache_dir() / "downloads" / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{name}"


def _cached_download(url: str, cached: Path, what: str) -> str:
    """The text at `url`, downloaded once into `cached`."""
    if not cached.is_file():
        try:
            _download(url, cached)
        except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors; a malformed URL is a ValueError
            hint = (f"fetch {url} by hand and set JAXGPT_DATA_DIR to its folder (as tinyshakespeare.txt), or load a "
                    f"local copy" if url == TINYSHAKESPEARE_URL else "load a local copy instead")
            hint += " (load_text(PATH), train.py --data PATH)"
            raise DataError(f"cannot download {what} ({getattr(e, 'reason', None) or e}); {hint}") from None
    return _read_utf8(cached, what)


def load_text(source: str = "tinyshakespeare") -> str:
    """A text from a local path, an http(s) URL (cached), `hf:NAME[:CONFIG]`, or `tinyshakespeare`
    ($JAXGPT_DATA_DIR/tinyshakespeare.txt when that is set, else downloaded once into the cache)."""
    if source == "tinyshakespeare":
        if os.environ.get("JAXGPT_DATA_DIR"):
            path = Path(os.environ["JAXGPT_DATA_DIR"]) / "tinyshakespeare.txt"
            if not path.is_file():
                raise DataError(f"JAXGPT_DATA_DIR is set but {path} does not exist; put Tiny Shakespeare there "
                                f"(from {TINYSHAKESPEARE_URL}) or unset JAXGPT_DATA_DIR to download it")
            return _read_utf8(path, str(path))
        return _cached_download(TINYSHAKESPEARE_URL, cache_dir() / "downloads" / "tinyshakespeare.txt",
                                "Tiny Shakespeare")
    if source.startswith(("http://", "https://")):
        return _cached_download(source, _url_cache_path(source), source)
    if source.startswith("hf:"):
        return _load_hf(source)
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"data file {source!r} not found (--data takes a text file, an http(s) URL, "
                        f"hf:NAME[:CONFIG] or 'tinyshakespeare')")
    return _read_utf8(path, source)


def _load_hf(source: str) -> str:
    import datasets

    name, _, config = source[3:].partition(":")
    if not name:
        raise DataError(f"{source!r}: expected hf:NAME[:CONFIG]")
    try:
        ds = datasets.load_dataset(name, config or None, split="train")
    except Exception as e:  # datasets raises many types (FileNotFoundError, ConnectionError, DatasetNotFoundError...)
        raise DataError(f"cannot load Hugging Face dataset {source!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    text_cols = [c for c, f in ds.features.items() if getattr(f, "dtype", None) in ("string", "large_string")]
    if not text_cols:
        raise DataError(f"Hugging Face dataset {source!r} has no text column (columns: {', '.join(ds.column_names)})")
    col = "text" if "text" in text_cols else text_cols[0]
    return "\n".join(ds[col])


def train_val_split(tokens: np.ndarray, block_size: int, train_frac: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """The lecture's split: first 90% train, last 10% validation. Each must hold one (x, y) window."""
    n = int(train_frac * len(tokens))
    train, val = tokens[:n], tokens[n:]
    for name, part in (("train", train), ("val", val)):
        if len(part) < block_size + 1:
            raise DataError(f"the {name} split has {len(part)} tokens, fewer than block_size + 1 = {block_size + 1}; "
                            f"use a longer text or a smaller block_size")
    return train, val


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
