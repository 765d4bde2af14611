"""Text sources: a local file, an http(s) URL (downloaded once into the cache), `hf:NAME[:CONFIG]`, or Tiny
Shakespeare."""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from ..errors import DataError

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
DOWNLOAD_TIMEOUT_S = 60  # seconds per socket operation (connect, each read), not for the whole file


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
    """The train split's text column, streamed (rows read as they arrive, no Arrow copy of the dataset on disk)
    and joined with newlines."""
    import datasets

    name, _, config = source[3:].partition(":")
    if not name:
        raise DataError(f"{source!r}: expected hf:NAME[:CONFIG]")
    try:
        ds = datasets.load_dataset(name, config or None, split="train", streaming=True)
        features = ds.features or {k: datasets.Value("string") if isinstance(v, str) else None
                                   for k, v in next(iter(ds), {}).items()}  # a stream may not declare its columns
        text_cols = [c for c, f in features.items() if getattr(f, "dtype", None) in ("string", "large_string")]
        if not text_cols:
            raise DataError(f"Hugging Face dataset {source!r} has no text column (columns: {', '.join(features)})")
        col = "text" if "text" in text_cols else text_cols[0]
        return "\n".join(row[col] for row in ds)
    except DataError:
        raise
    except Exception as e:  # datasets raises many types (FileNotFoundError, ConnectionError, DatasetNotFoundError...)
        raise DataError(f"cannot load Hugging Face dataset {source!r}: "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
