"""Shared tiny configs and the session-wide set-up: a compile cache, a private cache dir, the data dir."""
import os
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


def pytest_configure(config):
    tmp = Path(os.environ.get("PYTEST_JAXGPT_TMP", "/tmp")) / f"jaxgpt-tests-{os.getpid()}"
    os.environ.setdefault("JAXGPT_CACHE_DIR", str(tmp / "cache"))
    jax.config.update("jax_compilation_cache_dir", str(tmp / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    if not os.environ.get("JAXGPT_DATA_DIR"):
        shared = REPO.parent / "shared" / "data"
        if (shared / "tinyshakespeare.txt").is_file():
            os.environ["JAXGPT_DATA_DIR"] = str(shared)


@pytest.fixture(scope="session")
def tiny():
    return TINY


@pytest.fixture(scope="session")
def tiny_train():
    return TINY_TRAIN


@pytest.fixture(scope="session")
def shakespeare_path():
    path = Path(os.environ["JAXGPT_DATA_DIR"]) / "tinyshakespeare.txt"
    assert path.is_file(), f"{path} missing: set JAXGPT_DATA_DIR to the folder holding tinyshakespeare.txt"
    return path


@pytest.fixture()
def small_text(tmp_path):
    """A small UTF-8 text file (Tiny Shakespeare's first 20k characters) for end-to-end runs."""
    path = Path(os.environ["JAXGPT_DATA_DIR"]) / "tinyshakespeare.txt"
    p = tmp_path / "small.txt"
    p.write_text(path.read_text(encoding="utf-8")[:20000], encoding="utf-8")
    return p


def tiny_with(**kw) -> GPTConfig:
    return replace(TINY, **kw)
