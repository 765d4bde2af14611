"""Run folders written by an earlier version (tests/fixtures, made at commit c9793c2) still resume and sample.

The GPT run resumes from its step-6 checkpoint to step 9 and must end where a run trained straight to 9 by this
version ends. Bit for bit needs the same CPU model as the one that wrote the fixture (XLA compiles for the host
CPU); on another one the comparison is to 1e-6.
"""
import json
import re
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from conftest import REPO
from jaxgpt import checkpoint as ckpt
from jaxgpt import load_checkpoint
from jaxgpt.cli import sample_main, train_main
from jaxgpt.config import GPTConfig, NGramConfig, from_dict
from jaxgpt.errors import CheckpointError

FIXTURES = REPO / "tests" / "fixtures"
GPT_SETS = ["n_layer=1", "n_head=2", "n_embd=16", "block_size=8", "batch_size=4", "dropout=0.1", "eval_interval=3",
            "eval_iters=2", "ckpt_interval=3", "steps_per_call=3", "warmup_iters=2", "lr_decay_iters=12",
            "sample_chars=0", "keep_checkpoints=3"]
SAMPLE = ["--prompt", "ROMEO:", "--max-new-tokens", "60", "--seed", "3"]


def same_cpu_as_fixture() -> bool:
    made_on = json.loads((FIXTURES / "made_on.json").read_text())
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    here = {k: re.search(rf"^{k}\s*:\s*(.+)$", info, re.M) for k in ("cpu family", "model")}
    return {k: m.group(1).strip() if m else None for k, m in here.items()} == made_on


@pytest.fixture()
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # the fixtures name their data by a path relative to the repository


def test_old_configs_read_as_today_s_configs():
    gpt = from_dict(json.loads((FIXTURES / "v0_gpt_run" / "config.json").read_text()))[0]
    counts = from_dict(json.loads((FIXTURES / "v0_ngram_run" / "config.json").read_text()))[0]
    assert isinstance(gpt, GPTConfig) and (gpt.n_layer, gpt.n_embd, gpt.vocab_size) == (1, 16, 58)
    assert counts == NGramConfig(n=3, smoothing="kneser_ney", alpha=0.05, vocab_size=58)


def test_old_gpt_run_resumes_like_a_straight_run(in_repo, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(FIXTURES / "v0_gpt_run", old)
    assert train_main(["--out-dir", str(old), "--resume", "--max-iters", "9"]) == 0
    straight = tmp_path / "straight"
    args = ["--preset", "nanogpt-cpu", "--data", "tests/data/tinyshakespeare_head.txt", "--out-dir", str(straight)]
    assert train_main(args + ["--max-iters", "9", "--set", *GPT_SETS]) == 0

    with ckpt.manager(old, read_only=True) as a, ckpt.manager(straight, read_only=True) as b:
        (got, _, _), (want, _, _) = ckpt.restore_latest(a), ckpt.restore_latest(b)
    assert int(got.step) == int(want.step) == 9
    diff = max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)))
    assert diff == 0.0 if same_cpu_as_fixture() else diff < 1e-6, diff
    losses = lambda d: [(r["step"], r["train_loss"], r["val_loss"])
                        for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())]
    if same_cpu_as_fixture():
        assert losses(old) == losses(straight)
    else:
        assert [s for s, *_ in losses(old)] == [s for s, *_ in losses(straight)] == [0, 3, 6, 9]


@pytest.mark.parametrize("run", ["gpt", "ngram"])
def test_old_runs_sample_what_they_sampled(run, in_repo, tmp_path, capsys):
    out = tmp_path / "sample.txt"
    assert sample_main(["--out-dir", str(FIXTURES / f"v0_{run}_run"), *SAMPLE, "--out", str(out)]) == 0
    text, before = out.read_text(), (FIXTURES / f"v0_{run}_sample.txt").read_text()
    if run == "ngram" or same_cpu_as_fixture():  # counts are numpy: the same on every machine
        assert text == before
    else:
        assert len(text) == len(before) and text.startswith(before.split("ROMEO:")[0] + "ROMEO:")


def test_old_ngram_run_is_named_for_what_it_is(in_repo, capsys):
    with pytest.raises(CheckpointError, match="n-gram count model"):
        load_checkpoint(FIXTURES / "v0_ngram_run")
    config, params, tokenizer = load_checkpoint(FIXTURES / "v0_gpt_run")
    assert config.n_embd == 16 and tokenizer.vocab_size == 58 and "blocks" in params
