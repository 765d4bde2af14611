"""Shared tiny configs and the session-wide set-up: a compile cache, a private cache dir, the data dir."""
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import jax
import pytest

from jaxgpt.config import GPTConfig, TrainConfig

# 2 layers, 2 heads, 32 wide, block 16: every test that can shares these shapes, so each compiles once
TINY = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
TINY_TRAIN = TrainConfig(batch_size=8, learning_rate=3e-3, max_iters=20, lr_decay_iters=20, eval_interval=10,
                         eval_iters=2, ckpt_interval=10, steps_per_call=5, sample_chars=20)

REPO = Path(__file__).resolve().parents[1]


HEAD_TEXT = REPO / "tests" / "data" / "tinyshakespeare_head.txt"  # Tiny Shakespeare's first 40 KB, committed
_TMP = Path(os.environ.get("PYTEST_JAXGPT_TMP") or tempfile.gettempdir()) / f"jaxgpt-tests-{os.getpid()}"


def pytest_configure(config):
    """Caches and pytest's tmp_path folders all go under one folder of this session, removed at the end. The whole
    corpus comes from $JAXGPT_DATA_DIR, else ../shared/data, else the user's download cache (else: skipped)."""
    user_cache = Path(os.environ.get("JAXGPT_CACHE_DIR") or Path.home() / ".cache" / "jaxgpt") / "downloads"
    os.environ["JAXGPT_CACHE_DIR"] = str(_TMP / "cache")  # a private cache: no test sees another's downloads
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        _TMP.mkdir(parents=True, exist_ok=True)
        config.option.basetemp = str(_TMP / "pytest")
    jax.config.update("jax_compilation_cache_dir", str(_TMP / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    if not os.environ.get("JAXGPT_DATA_DIR"):
        shared = REPO.parent / "shared" / "data"
        for folder in (shared, user_cache):  # this project's machines, else a copy train.py downloaded before
            if (folder / "tinyshakespeare.txt").is_file():
                os.environ["JAXGPT_DATA_DIR"] = str(folder)
                break


def pytest_unconfigure(config):
    shutil.rmtree(_TMP, ignore_errors=True)


def whole_corpus() -> Path:
    """The whole Tiny Shakespeare (1.1 MB), for the few tests that need it; skips with the reason otherwise."""
    path = Path(os.environ.get("JAXGPT_DATA_DIR", "(JAXGPT_DATA_DIR unset)")) / "tinyshakespeare.txt"
    if not path.is_file():
        pytest.skip(f"needs the whole Tiny Shakespeare, not at {path} nor in the download cache: set "
                    f"JAXGPT_DATA_DIR to a folder holding tinyshakespeare.txt")
    return path


@pytest.fixture(scope="session")
def tiny():
    return TINY


@pytest.fixture(scope="session")
def tiny_train():
    return TINY_TRAIN


@pytest.fixture(scope="session")
def shakespeare_path():
    return whole_corpus()


@pytest.fixture()
def small_text(tmp_path):
    """A small UTF-8 text file (Tiny Shakespeare's first 20k characters) for end-to-end runs."""
    p = tmp_path / "small.txt"
    p.write_text(HEAD_TEXT.read_text(encoding="utf-8")[:20000], encoding="utf-8")
    return p


def tiny_with(**kw) -> GPTConfig:
    return replace(TINY, **kw)
