"""Text in, tokens out: tokenizers (`tokenizers.py`), text sources (`sources.py`), and the split and batches
(`batches.py`). `from jaxgpt.data import ...` of every name below works as it did when this was one file."""
from ..errors import DataError
from .batches import eval_windows, sample_batch, split, train_val_split
from .sources import DOWNLOAD_TIMEOUT_S, TINYSHAKESPEARE_URL, cache_dir, load_text
from .tokenizers import CharTokenizer

__all__ = ["CharTokenizer", "DataError", "DOWNLOAD_TIMEOUT_S", "TINYSHAKESPEARE_URL", "cache_dir", "eval_windows",
           "load_text", "sample_batch", "split", "train_val_split"]
