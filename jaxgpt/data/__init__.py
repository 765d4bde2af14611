"""Text in, tokens out: tokenizers of three kinds (`tokenizers.py`), text sources (`sources.py`), and the split
and batches (`batches.py`). `from jaxgpt.data import ...` of every name below works as it did when this was one file."""
from ..errors import DataError
from .batches import (bits_per_char, check_splits, eval_windows, sample_batch, split, split_text,
                      train_val_split)
from .sources import DOWNLOAD_TIMEOUT_S, TINYSHAKESPEARE_URL, cache_dir, load_text
from .tokenizers import (KINDS, CharTokenizer, HFTokenizer, check_bpe_vocab, from_meta, ids_dtype, load_tokenizer,
                         parse_tokenizer, train_bpe)

__all__ = ["bits_per_char", "check_splits", "CharTokenizer", "DataError", "DOWNLOAD_TIMEOUT_S", "HFTokenizer", "KINDS",
           "TINYSHAKESPEARE_URL", "cache_dir", "check_bpe_vocab", "eval_windows", "from_meta", "ids_dtype", "load_text", "load_tokenizer",
           "parse_tokenizer", "sample_batch", "split", "split_text", "train_bpe", "train_val_split"]
