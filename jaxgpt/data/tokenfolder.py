"""A folder of token files (`train.bin`, `val.bin` and `meta.json` or nanoGPT's `meta.pkl`, docs/data.md): read,
checked once, and memory-mapped. Nothing here loads a split into memory: a memmap reads pages on demand, and the
kernel keeps them in the page cache, not in the process's anonymous memory."""
from __future__ import annotations

import hashlib
import io
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .prepare import FORMAT, VERSION  # the writer's format: one definition
from .tokenizers import CharTokenizer, HFTokenizer, load_tokenizer

DTYPES = ("uint16", "uint32")
SCAN_TOKENS = 1 << 24  # ids read at a time by the vocabulary check: 32 MiB of uint16 in the page cache, not the heap


def is_token_folder(source: str) -> bool:
    """`--data DIR` of token files: a folder holding train.bin (a text source is never a folder)."""
    path = Path(source).expanduser()
    return path.is_dir() and (path / "train.bin").exists()


class PlainUnpickler(pickle.Unpickler):
    """Plain data only (dicts, lists, str, int, float, ...), for nanoGPT's meta.pkl: a pickle that names any class or
    function is refused with pickle.UnpicklingError, so reading one never runs code."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: this pickle holds more than plain data "
                                     f"(a meta.pkl has only vocab_size, itos and stoi)")


@dataclass(frozen=True)
class TokenFolder:
    """What a run needs of a token folder: where the splits are, their dtype, the tokenizer and the identity."""
    path: Path
    dtype: str                 # uint16 | uint32 (docs/data.md)
    vocab_size: int            # every id in the files is below it
    tokenizer: CharTokenizer | HFTokenizer  # tokenizer.json (char, bpe or file), or nanoGPT's meta.pkl characters
    tokens_sha256: str         # meta.json's; for a nanoGPT folder a digest of meta.pkl and the file sizes
    tokens: tuple[int, int]    # ids in train.bin, val.bin
    val_chars: int             # characters of the validation text: bits per character (docs/data.md)

    def split(self, name: str) -> np.memmap:
        """The split's ids, memory-mapped read-only (opened again on each call: a worker reopens it by path)."""
        return np.memmap(self.path / f"{name}.bin", dtype=self.dtype, mode="r")


def _meta_json(path: Path) -> dict:
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path / 'meta.json'} cannot be read ({type(e).__name__}: {e}); write the folder again "
                        f"with jaxgpt-prepare") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("version"), int):
        raise DataError(f"{path / 'meta.json'} is not a jaxgpt token folder's meta (format {meta.get('format')!r} "
                        f"if a dict; expected {FORMAT!r})" if isinstance(meta, dict) else
                        f"{path / 'meta.json'} is not a JSON object")
    if meta["version"] > VERSION:
        raise DataError(f"{path / 'meta.json'} has version {meta['version']}, newer than this jaxgpt reads "
                        f"({VERSION}); upgrade jaxgpt")
    tok = meta.get("tokenizer") or {}
    tokenizer = load_tokenizer(path / tok.get("file", "tokenizer.json"), tok.get("kind"))
    if meta.get("dtype") not in DTYPES:
        raise DataError(f"{path / 'meta.json'}: dtype {meta.get('dtype')!r} is not one of {', '.join(DTYPES)}")
    splits = meta.get("splits") or {}
    return {"dtype": meta["dtype"], "vocab_size": int(meta.get("vocab_size", tokenizer.vocab_size)),
            "tokenizer": tokenizer, "sha": str(meta.get("tokens_sha256", "")), "splits": splits,
            "val_chars": int((splits.get("val") or {}).get("chars", 0))}


def _meta_pkl(path: Path) -> dict:
    raw = (path / "meta.pkl").read_bytes()
    try:
        meta = PlainUnpickler(io.BytesIO(raw)).load()
        itos = meta["itos"]
        chars = [itos[i] for i in range(int(meta["vocab_size"]))]
    except Exception as e:  # a damaged pickle raises many types; all mean "not nanoGPT's meta.pkl"
        raise DataError(f"{path / 'meta.pkl'} is not nanoGPT's char meta.pkl ({type(e).__name__}: {e})") from None
    sizes = ",".join(str(2 * _count(path, s, "uint16", {})) for s in ("train", "val"))  # bytes; a missing file: one line
    sha = hashlib.sha256(raw + sizes.encode()).hexdigest()  # no tokens_sha256 to read, and files are never hashed
    return {"dtype": "uint16", "vocab_size": len(chars), "tokenizer": CharTokenizer(chars), "sha": sha, "splits": {},
            "val_chars": 0}  # characters: as many as val.bin's ids


def _count(path: Path, name: str, dtype: str, splits: dict) -> int:
    file = path / f"{name}.bin"
    if not file.is_file():
        raise DataError(f"{path} has no {name}.bin; a token folder holds train.bin and val.bin (docs/data.md)")
    size, item = file.stat().st_size, np.dtype(dtype).itemsize
    if size % item:
        raise DataError(f"{file} has {size:,} bytes, not a multiple of {item} for {dtype}: the file is truncated "
                        f"or its dtype is wrong")
    expected = (splits.get(name) or {}).get("tokens")
    if expected is not None and expected * item != size:
        raise DataError(f"{file} has {size:,} bytes but meta.json says {expected:,} {dtype} tokens "
                        f"({expected * item:,} bytes): the dtype in meta.json does not match the file")
    return size // item


def _check_ids(folder: TokenFolder, name: str) -> None:
    ids = folder.split(name)
    for start in range(0, len(ids), SCAN_TOKENS):
        top = int(ids[start:start + SCAN_TOKENS].max())
        if top >= folder.vocab_size:
            at = start + int(np.argmax(ids[start:start + SCAN_TOKENS] >= folder.vocab_size))
            raise DataError(f"{folder.path / (name + '.bin')} holds token id {int(ids[at])} at index {at:,}, not "
                            f"below the vocabulary of {folder.vocab_size}: the files and the tokenizer disagree")


def open_token_folder(source: str, block_size: int) -> TokenFolder:
    """The folder at `source`, checked: meta, sizes, dtypes, every id below the vocabulary (one pass over the
    files in the page cache), and each split at least one (x, y) window long. Raises DataError in one line."""
    path = Path(source).expanduser()
    if (path / "meta.json").is_file():
        meta = _meta_json(path)
    elif (path / "meta.pkl").is_file():
        meta = _meta_pkl(path)
    else:
        raise DataError(f"{path} holds train.bin but no meta.json or meta.pkl, so nothing says what its ids mean; "
                        f"write it with jaxgpt-prepare, or give nanoGPT's meta.pkl beside it")
    if meta["vocab_size"] != meta["tokenizer"].vocab_size:
        raise DataError(f"{path}: vocab_size {meta['vocab_size']} but the tokenizer has "
                        f"{meta['tokenizer'].vocab_size} tokens")
    counts = tuple(_count(path, name, meta["dtype"], meta["splits"]) for name in ("train", "val"))
    val_chars = meta["val_chars"] or (counts[1] if meta["tokenizer"].kind == "char" else 0)
    folder = TokenFolder(path.absolute(), meta["dtype"], meta["vocab_size"], meta["tokenizer"], meta["sha"], counts,
                         val_chars)
    for name, n in zip(("train", "val"), counts):
        if n < block_size + 1:
            raise DataError(f"{path / (name + '.bin')} has {n:,} tokens, fewer than one window of block_size + 1 "
                            f"= {block_size + 1}; use more data or a smaller block_size")
        _check_ids(folder, name)
    return folder
