"""Tokenizers: text <-> token ids, one interface, three kinds.

- `char`: the lecture's stoi/itos (`CharTokenizer`), saved as jaxgpt's `{"chars": [...]}`; the default.
- `bpe`: a byte-level BPE trained with Hugging Face `tokenizers` on a run's training text (`train_bpe`): any text
  round-trips, since every byte is in its alphabet (GPT-2's scheme).
- `file`: any `tokenizer.json` in Hugging Face's format (GPT-2's own is one).

`bpe` and `file` are both an `HFTokenizer` and save as Hugging Face's `tokenizer.json`, which
`tokenizers.Tokenizer.from_file` and `transformers.PreTrainedTokenizerFast(tokenizer_file=...)` load unchanged.
Each tokenizer has `kind`, `vocab_size`, `dtype`, `encode`, `encode_batch`, `decode`, `to_json`, `save`,
`sha256` (of its JSON: the identity a run records) and `start_id` (the newline a sample starts from).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..errors import DataError

KINDS = ("char", "bpe", "file")
BYTE_ALPHABET = 256            # a byte-level BPE's vocabulary starts with every byte
MAX_VOCAB = 2 ** 32            # ids are stored as uint32 at most (docs/data.md)
CHUNK_CHARS = 1 << 16          # encode_batch cuts a text into pieces of about this many characters


def ids_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds every id below vocab_size."""
    return np.dtype(np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 65536 else np.uint32)


class CharTokenizer:
    """The lecture's stoi/itos: the sorted unique characters of the training text."""
    kind = "char"

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
        return ids_dtype(self.vocab_size)

    def encode(self, text: str) -> np.ndarray:
        try:
            return np.fromiter((self.stoi[c] for c in text), dtype=self.dtype, count=len(text))
        except KeyError:
            unknown = sorted(set(text) - self.stoi.keys())
            shown = ", ".join(repr(c) for c in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise ValueError(f"text has {len(unknown)} character(s) not in the vocabulary: {shown}") from None

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [self.encode(t) for t in texts]

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))

    def start_id(self) -> int:
        return self.stoi.get("\n", 0)

    def to_json(self) -> str:
        return json.dumps({"chars": self.chars})

    @classmethod
    def from_json(cls, text: str) -> "CharTokenizer":
        return cls(json.loads(text)["chars"])

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def to_meta(self):
        """What a checkpoint's meta records: the characters themselves (as before subword tokens)."""
        return self.chars


class HFTokenizer:
    """A Hugging Face `tokenizers.Tokenizer`: `bpe` (trained here by `train_bpe`) or `file` (a given tokenizer.json).
    Special tokens in the text (GPT-2's `<|endoftext|>`) encode to their ids; decode keeps them."""

    def __init__(self, tokenizer, kind: str = "file"):
        if kind not in ("bpe", "file"):
            raise ValueError(f"an HFTokenizer is 'bpe' or 'file', not {kind!r}")
        self.tokenizer, self.kind = tokenizer, kind
        spec = json.loads(tokenizer.to_str())
        pre = spec.get("pre_tokenizer") or {}
        # pieces encode like the whole only under a byte-level pre-tokenizer with GPT-2's regex and no normalizer
        self.cuts_exactly = (spec.get("normalizer") is None and pre.get("type") == "ByteLevel"
                             and not pre.get("add_prefix_space") and pre.get("use_regex", True))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def dtype(self) -> np.dtype:
        return ids_dtype(self.vocab_size)

    def encode(self, text: str) -> np.ndarray:
        """The ids of `text`, equal to the tokenizer's own `encode(text).ids` (encoded in pieces, in parallel)."""
        parts = self.encode_batch(split_for_batch(text) if self.cuts_exactly else [text])
        return np.concatenate(parts) if parts else np.zeros(0, self.dtype)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """Each text's ids; `tokenizers` spreads the batch over the machine's cores. A long text is cut with
        `split_for_batch` first where `cuts_exactly` (else its pieces may encode differently at the cuts)."""
        return [np.asarray(e.ids, self.dtype) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in np.asarray(ids).reshape(-1)], skip_special_tokens=False)

    def start_id(self) -> int:
        ids = self.tokenizer.encode("\n", add_special_tokens=False).ids
        return ids[0] if len(ids) == 1 else 0

    def to_json(self) -> str:
        return self.tokenizer.to_str()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def to_meta(self) -> dict:
        """What a checkpoint's meta records: the kind, size and hash; the tokenizer itself is the run folder's
        tokenizer.json, which `from_meta` checks against the hash."""
        return {"kind": self.kind, "vocab_size": self.vocab_size, "sha256": self.sha256}


def split_for_batch(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """`text` cut into pieces of about `size` characters that a byte-level pre-tokenizer splits exactly as it splits
    the whole: each cut is after a newline that stands between two non-space characters (GPT-2's regex ends a token
    there either way), so the pieces' ids, concatenated, are the whole text's. A text without such a newline is one
    piece."""
    pieces, start = [], 0
    while len(text) - start > size:
        cut = text.find("\n", start + size)
        while cut != -1 and not (cut + 1 < len(text) and not text[cut - 1].isspace() and not text[cut + 1].isspace()):
            cut = text.find("\n", cut + 1)
        if cut == -1:
            break
        pieces.append(text[start:cut + 1])
        start = cut + 1
    return pieces + [text[start:]] if start < len(text) else pieces


def check_bpe_vocab(vocab_size: int) -> None:
    if not BYTE_ALPHABET <= vocab_size <= MAX_VOCAB:
        raise DataError(f"BPE vocabulary size {vocab_size} must be in [{BYTE_ALPHABET}, {MAX_VOCAB}]: at least the "
                        f"byte alphabet (every byte is a token) and ids that fit uint32")


def train_bpe(text: str, vocab_size: int) -> HFTokenizer:
    """A byte-level BPE of (at most) `vocab_size` tokens trained on `text`: GPT-2's pre-tokenizer without a prefix
    space, the ByteLevel decoder, and all 256 bytes in the alphabet, so any text encodes and decodes back. The same
    text gives the same vocabulary and ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    check_bpe_vocab(vocab_size)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(split_for_batch(text), trainer)
    return HFTokenizer(tokenizer, "bpe")


def parse_tokenizer(text: str, source: str, kind: str | None = None) -> CharTokenizer | HFTokenizer:
    """A tokenizer from its JSON: jaxgpt's `{"chars": [...]}` is `char`, Hugging Face's format (a "model" object)
    is `kind` (default `file`). DataError naming `source` for anything else."""
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise DataError(f"{source} is not a tokenizer: not JSON ({e})") from None
    if isinstance(obj, dict) and isinstance(obj.get("chars"), list):
        try:
            return CharTokenizer(obj["chars"])
        except (ValueError, TypeError) as e:
            raise DataError(f"{source} is not a tokenizer: its chars are not unique strings ({e})") from None
    if not (isinstance(obj, dict) and isinstance(obj.get("model"), dict)):
        raise DataError(f"{source} is not a tokenizer: expected Hugging Face's tokenizer.json (with a \"model\") or "
                        f"jaxgpt's {{\"chars\": [...]}}")
    from tokenizers import Tokenizer
    try:
        return HFTokenizer(Tokenizer.from_str(text), kind or "file")
    except Exception as e:  # tokenizers raises a bare Exception for a malformed file
        raise DataError(f"{source} is not a tokenizer Hugging Face's tokenizers can load: "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def load_tokenizer(path: str | Path, kind: str | None = None) -> CharTokenizer | HFTokenizer:
    """The tokenizer in `path` (a tokenizer.json, or a folder holding one), its kind told by its JSON."""
    path = Path(path).expanduser()
    file = path / "tokenizer.json" if path.is_dir() else path
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read tokenizer {file}: {getattr(e, 'strerror', None) or e}") from None
    return parse_tokenizer(text, str(file), kind)


def from_meta(value, folder: str | Path) -> CharTokenizer | HFTokenizer:
    """The tokenizer a checkpoint's meta names: its characters (`char`), or the folder's tokenizer.json, checked
    against the hash the run recorded (`bpe`, `file`)."""
    if isinstance(value, list):
        return CharTokenizer(value)
    tokenizer = load_tokenizer(Path(folder) / "tokenizer.json", value["kind"])
    if tokenizer.sha256 != value["sha256"]:
        raise DataError(f"{Path(folder) / 'tokenizer.json'} (sha256 {tokenizer.sha256[:16]}) is not the tokenizer "
                        f"the run was trained with (sha256 {value['sha256'][:16]}); restore the run's own file")
    return tokenizer
