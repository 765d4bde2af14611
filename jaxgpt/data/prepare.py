"""The prepare step: a text (file, URL, `hf:NAME[:CONFIG]`, `tinyshakespeare`) into a folder of token files in
nanoGPT's format, `train.bin` / `val.bin` plus `meta.json` (and `meta.pkl` for characters): docs/data.md.

The text is split 90/10 by characters, a `bpe` tokenizer is trained on the train split only, and each split is
encoded in pieces that `tokenizers` spreads over the cores. Every file is written under a temporary name and
renamed at the end, `meta.json` last, so a folder with a `meta.json` is complete; a rerun on the same source and
settings finds that `meta.json` and writes nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from .batches import split_text
from .sources import load_text
from .tokenizers import CharTokenizer, check_bpe_vocab, load_tokenizer, split_for_batch, train_bpe

FORMAT, VERSION = "jaxgpt-tokens", 1
BATCH_PIECES = 64  # pieces (of ~64K characters) per encode_batch call: ~4M characters between progress updates


def file_dtype(vocab_size: int) -> np.dtype:
    """nanoGPT's uint16 when every id fits, else uint32 (docs/data.md)."""
    return np.dtype(np.uint16 if vocab_size <= 65536 else np.uint32)


def check_writable(out_dir: Path) -> None:
    """DataError unless files can be created in out_dir (or, if it does not exist yet, in its nearest existing
    parent); the probe file is removed, so nothing is left behind."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"output folder {out_dir} is a file, not a folder; choose another (nothing was written)")
    probe_dir = out_dir
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    try:
        fd, probe = tempfile.mkstemp(dir=probe_dir, prefix=".jaxgpt-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise DataError(f"cannot write into {out_dir} ({e.strerror or e} in {probe_dir}); choose a writable "
                        f"folder (nothing was written)") from None


def make_tokenizer(kind: str, text: str, train_text: str, vocab_size: int, file: str | Path | None):
    """The tokenizer of a prepare (or a run): `char` from the whole text (nanoGPT's shakespeare_char), `bpe` trained
    on the train split only, `file` read from `file`."""
    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind == "bpe":
        return train_bpe(train_text, vocab_size)
    if kind == "file":
        if file is None:
            raise DataError("tokenizer kind 'file' needs --tokenizer PATH (a Hugging Face tokenizer.json)")
        tokenizer = load_tokenizer(file)
        if tokenizer.kind == "char":
            raise DataError(f"{file} is jaxgpt's character vocabulary, not a Hugging Face tokenizer.json; characters "
                            f"are the default (drop --tokenizer)")
        return tokenizer
    raise DataError(f"tokenizer {kind!r} is not one of 'char', 'bpe', 'file'")


def _settings(kind: str, vocab_size: int, file, train_frac: float) -> dict:
    """What, besides the source text, decides the files: a rerun with the same settings is a no-op."""
    return {"kind": kind, "train_frac": train_frac, **({"bpe_vocab_size": vocab_size} if kind == "bpe" else {}),
            **({"file_sha256": load_tokenizer(file).sha256} if kind == "file" else {})}


def _is_done(out_dir: Path, source_sha: str, settings: dict) -> dict | None:
    try:
        meta = json.loads((out_dir / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if meta.get("source_sha256") == source_sha and meta.get("settings") == settings else None


def _encode_split(tokenizer, text: str, path: Path, dtype: np.dtype, hasher, bar) -> int:
    """Encode `text` in batches of pieces, appending the ids to `path` and to `hasher`; returns the token count."""
    pieces = split_for_batch(text) if getattr(tokenizer, "cuts_exactly", True) else [text]
    n = 0
    with path.open("wb") as f:
        for i in range(0, len(pieces), BATCH_PIECES):
            for ids in tokenizer.encode_batch(pieces[i:i + BATCH_PIECES]):
                data = ids.astype(dtype, copy=False).tobytes()
                f.write(data)
                hasher.update(data)
                n += len(ids)
                bar.update(len(ids))
    return n


def _write(tok, train_text: str, val_text: str, out_dir: Path, tmp, progress: bool) -> dict:
    """Every file but meta.json, under its final name; returns meta.json's fields that describe them."""
    from tqdm import tqdm

    dtype, hasher, splits = file_dtype(tok.vocab_size), hashlib.sha256(), {}
    with tqdm(unit="tok", unit_scale=True, desc=f"prepare {tok.kind}", disable=not progress) as bar:
        for name, part in (("train", train_text), ("val", val_text)):
            tokens = _encode_split(tok, part, tmp(f"{name}.bin"), dtype, hasher, bar)
            splits[name] = {"file": f"{name}.bin", "tokens": tokens, "chars": len(part)}
    tok.save(tmp("tokenizer.json"))
    files = ["train.bin", "val.bin", "tokenizer.json"]
    if isinstance(tok, CharTokenizer):  # nanoGPT's shakespeare_char/prepare.py meta.pkl, same dict order
        with tmp("meta.pkl").open("wb") as f:
            pickle.dump({"vocab_size": tok.vocab_size, "itos": dict(enumerate(tok.chars)), "stoi": tok.stoi}, f)
        files.append("meta.pkl")
    (out_dir / "meta.json").unlink(missing_ok=True)  # the folder is incomplete from here until meta.json is renamed
    for name in files:
        os.replace(tmp(name), out_dir / name)
    return {"format": FORMAT, "version": VERSION,
            "tokenizer": {"kind": tok.kind, "vocab_size": tok.vocab_size, "file": "tokenizer.json",
                          "sha256": tok.sha256},
            "vocab_size": tok.vocab_size, "dtype": dtype.name, "splits": splits, "tokens_sha256": hasher.hexdigest()}


def prepare_data(source: str, out_dir: str | Path, tokenizer: str = "char", vocab_size: int = 2048,
                 tokenizer_file: str | Path | None = None, train_frac: float = 0.9, log=print,
                 progress: bool = True) -> dict:
    """Write `source`'s text as token files into `out_dir` (docs/data.md) and return their meta.json. `tokenizer` is
    `char`, `bpe` (trained on the train split, at most `vocab_size` tokens) or `file` (`tokenizer_file`).
    Bad input raises DataError before anything is written."""
    out_dir = Path(out_dir).expanduser()
    if tokenizer == "bpe":
        check_bpe_vocab(vocab_size)
    if tokenizer == "file" and tokenizer_file is None:
        raise DataError("tokenizer 'file' needs tokenizer_file, a Hugging Face tokenizer.json")
    check_writable(out_dir)
    settings = _settings(tokenizer, vocab_size, tokenizer_file, train_frac)
    text = load_text(source)
    source_sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if (done := _is_done(out_dir, source_sha, settings)) is not None:
        log(f"{out_dir} already holds {source} prepared with these settings (meta.json); nothing to do")
        return done
    train_text, val_text = split_text(text, train_frac)
    if not train_text or not val_text:
        raise DataError(f"{source} has {len(text)} characters: too short for a {train_frac:g} train split and a "
                        f"non-empty validation split")
    tok = make_tokenizer(tokenizer, text, train_text, vocab_size, tokenizer_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = lambda name: out_dir / f".{name}.tmp"
    try:
        meta = _write(tok, train_text, val_text, out_dir, tmp, progress)
    except BaseException:  # an interrupted prepare leaves no temporary file behind, and no meta.json of its own
        for leftover in out_dir.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
        raise
    meta.update(source=source, source_sha256=source_sha, train_frac=train_frac, settings=settings)
    tmp("meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp("meta.json"), out_dir / "meta.json")  # last: from here the folder is complete
    splits = meta["splits"]
    log(f"prepared {source}: {splits['train']['tokens']:,} train / {splits['val']['tokens']:,} val tokens "
        f"({tok.kind}, vocab {tok.vocab_size}, {meta['dtype']}) in {out_dir}")
    return meta
