"""train.py in-process: one-line errors with exit status 2, and one end-to-end run that checks its files."""
import json

import pytest

from jaxgpt.cli import build_run, parse_train_args, train_main
from jaxgpt.presets import DEFAULT_PRESET

TINY_ARGS = ["--set", "n_layer=1", "--set", "n_head=2", "--set", "n_embd=32", "--set", "block_size=16",
             "--set", "batch_size=8", "--set", "eval_interval=5", "--set", "eval_iters=2", "--set", "steps_per_call=5",
             "--set", "sample_chars=40", "--set", "ckpt_interval=5", "--set", "warmup_iters=0",
             "--set", "learning_rate=3e-3"]


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("train.py: error:"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.mark.parametrize("argv, needles", [
    (["--preset", "giant"], ["'giant'", "bigram", "baby", "lecture", "shakespeare-char"]),
    (["--set", "n_embdd=64"], ["'n_embdd'", "n_embd"]),
    (["--set", "n_embd=big"], ["n_embd='big'", "int"]),
    (["--set", "dropout"], ["'dropout'", "key=value"]),
    (["--set", "n_embd=100", "--set", "n_head=6"], ["n_embd 100 is not divisible by n_head 6"]),
    (["--max-iters", "ten"], ["--max-iters", "'ten'"]),
    (["--bogus"], ["--bogus"]),
    (["--data", "/nonexistent/file.txt"], ["/nonexistent/file.txt"]),
])
def test_bad_input_is_one_line_and_exit_2(argv, needles, capsys, tmp_path):
    assert train_main(argv + ["--out-dir", str(tmp_path / "run")]) == 2
    _one_line_error(capsys, *needles)
    assert not (tmp_path / "run").exists()  # nothing written for bad input


def test_text_shorter_than_a_block_is_an_error(tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("abcdefghij" * 5, encoding="utf-8")
    assert train_main(["--preset", "baby", "--data", str(short), "--out-dir", str(tmp_path / "run")] + TINY_ARGS) == 2
    _one_line_error(capsys, "val split has 5 tokens", "block_size + 1 = 17")


def test_without_preset_train_py_trains_the_1024_token_bpe_into_out_shakespeare_bpe(small_text, tmp_path,
                                                                                      monkeypatch):
    """The default preset (issue 22: better per character than the character `baby` in the same time)."""
    monkeypatch.chdir(tmp_path)
    assert build_run(parse_train_args([])).preset == DEFAULT_PRESET == "shakespeare-bpe"
    sets = ["n_layer=1", "n_head=2", "n_embd=32", "block_size=16", "batch_size=8", "eval_interval=2", "eval_iters=1",
            "steps_per_call=2", "sample_chars=0", "warmup_iters=0"]
    assert train_main(["--data", str(small_text), "--max-iters", "2", "--set", *sets]) == 0
    out = tmp_path / "out" / "shakespeare-bpe"
    config = json.loads((out / "config.json").read_text())
    assert config["preset"] == "shakespeare-bpe" and config["model"]["n_embd"] == 32
    assert (config["train"]["tokenizer"], config["train"]["bpe_vocab_size"]) == ("bpe", 1024)
    assert config["train"]["optimizer"] == "muon" and config["model"]["pos_embedding"] == "rope"  # baby's recipe
    assert 256 < config["model"]["vocab_size"] <= 1024
    assert json.loads((out / "tokenizer.json").read_text())["model"]["type"] == "BPE"  # Hugging Face's format


def test_end_to_end_run_writes_its_files_and_refuses_to_overwrite(small_text, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--preset", "baby", "--data", str(small_text), "--out-dir", str(out), "--max-iters", "10"] + TINY_ARGS
    assert train_main(argv) == 0
    printed = capsys.readouterr().out
    assert "parameters" in printed and "n_embd=32" in printed

    config = json.loads((out / "config.json").read_text())
    assert config["model"]["n_embd"] == 32 and config["train"]["max_iters"] == 10 and config["preset"] == "baby"
    chars = json.loads((out / "tokenizer.json").read_text())["chars"]
    assert chars == sorted(set(small_text.read_text(encoding="utf-8")))
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 5, 10]
    for r in records:
        assert {"step", "train_loss", "val_loss", "tokens_per_s", "elapsed_s"} <= r.keys()
    assert "val_loss_full" in records[-1] and records[-1]["val_loss_full"] < records[0]["val_loss"]

    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert train_main(argv) == 2  # the same command again must not start over on top of the old run
    assert str(out) in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
