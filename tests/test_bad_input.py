"""Bad input, table-driven: each case is one line on stderr naming the value, exit status 2, no traceback, and
nothing already on disk changed; the library raises a ValueError subclass with the same kind of message.

The runs sampled from are copies of the committed fixtures (tests/fixtures), so no case trains anything.
"""
import os
import shutil
from pathlib import Path

import pytest

from conftest import HEAD_TEXT, REPO
from jaxgpt import checkpoint as ckpt
from jaxgpt import config as cfg
from jaxgpt.cli import sample_main, train_main
from jaxgpt.data import CharTokenizer, load_text, train_val_split
from jaxgpt.errors import CheckpointError, ConfigError, DataError, JaxgptError

FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A folder with the files the cases point at: texts, a directory, a file, copies of a GPT and an n-gram run."""
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.txt").write_text("")
    (d / "latin1.txt").write_bytes("héllo wörld\n".encode("latin-1") * 50)
    (d / "short.txt").write_text("abcdefghij" * 5)
    (d / "a_dir").mkdir()
    (d / "a_file").write_text("I am a file\n")
    (d / "head.txt").write_text(HEAD_TEXT.read_text()[:5000])
    shutil.copytree(FIXTURES / "v0_gpt_run", d / "gpt")
    for name in ("bad_config", "bad_tokenizer"):
        shutil.copytree(FIXTURES / "v0_ngram_run", d / name)
    (d / "bad_config" / "config.json").write_text('{"model": {"n": 3}, "tra')
    (d / "bad_tokenizer" / "tokenizer.json").write_text('{"characters": "abc"}')
    (d / "killed").mkdir()  # a run killed before its first checkpoint, with a damaged config.json
    (d / "killed" / "config.json").write_text("\x00\x00")
    (d / "killed" / "tokenizer.json").write_text('{"chars": ["a"]}')
    return d


def snapshot(d: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def one_line(err: str, prog: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    return lines[0]


# (argv with {d} for the folder above, words the one line must hold)
TRAIN_CASES = {
    "empty file": (["--data", "{d}/empty.txt"], ["empty.txt", "is empty"]),
    "binary file": (["--data", "{d}/latin1.txt"], ["latin1.txt", "not UTF-8"]),
    "text shorter than a block": (["--data", "{d}/short.txt", "--set", "block_size=16"], ["block_size + 1 = 17"]),
    "directory as data": (["--data", "{d}/a_dir"], ["a_dir", "is a directory"]),
    "missing data file": (["--data", "{d}/nope.txt"], ["nope.txt", "not found"]),
    "unreachable URL": (["--data", "http://127.0.0.1:9/input.txt"], ["cannot download", "127.0.0.1:9", "--data"]),
    "malformed URL": (["--data", "http://"], ["cannot download", "--data"]),
    "unknown preset": (["--preset", "giant"], ["'giant'", "baby"]),
    "unknown --set key": (["--set", "n_embdd=64"], ["'n_embdd'", "n_embd"]),
    "wrong type": (["--set", "n_layer=two"], ["n_layer='two'", "int"]),
    "bool that is not one": (["--set", "bias=maybe"], ["bias='maybe'", "bool"]),
    "zero batch size": (["--set", "batch_size=0"], ["batch_size 0", ">= 1"]),
    "negative iterations": (["--max-iters", "-5"], ["max_iters -5", ">= 1"]),
    "nan learning rate": (["--set", "learning_rate=nan"], ["learning_rate=nan", "finite"]),
    "infinite grad_clip": (["--set", "grad_clip=inf"], ["grad_clip=inf", "finite"]),
    "negative grad_clip": (["--set", "grad_clip=-1"], ["grad_clip -1.0 must be >= 0.0"]),
    "beta2 of 1": (["--set", "beta2=1"], ["beta2 1.0", "[0.0, 1.0)"]),
    "dropout of 1.5": (["--set", "dropout=1.5"], ["dropout 1.5", "[0.0, 1.0)"]),
    "n_embd not divisible by n_head": (["--set", "n_embd=30", "n_head=4"], ["n_embd 30", "n_head 4"]),
    "vocab_size set by hand": (["--set", "vocab_size=10"], ["vocab_size=10", "tokenizer"]),
    "out-dir that is a file": (["--out-dir", "{d}/a_file"], ["a_file", "is a file"]),
    "resume of a file": (["--out-dir", "{d}/a_file", "--resume"], ["a_file", "is a file"]),
    "other model shape": (["--init-from", "{d}/gpt", "--set", "n_embd=32", "n_head=2"],
                          ["in the checkpoint but", "in the model"]),
    "resume, damaged config.json": (["--out-dir", "{d}/killed", "--resume"], ["config.json", "cannot be read"]),
    "resume changing the model": (["--out-dir", "{d}/gpt", "--resume", "--set", "n_layer=2"],
                                  ["n_layer=2", "learning_rate, grad_clip, warmup_iters"]),
}


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_train_bad_input(case, place, capsys):
    argv, words = TRAIN_CASES[case]
    argv = [a.format(d=place) for a in argv]
    if "--out-dir" not in argv:
        argv += ["--out-dir", str(place / "new")]
    if "--data" not in argv and "--resume" not in argv:
        argv += ["--data", str(place / "head.txt")]
    if not {"--preset", "--resume", "--init-from"} & set(argv):
        argv += ["--preset", "baby"]  # the character model the cases were written for (the default is the BPE one)
    before = snapshot(place)
    assert train_main(argv) == 2
    line = one_line(capsys.readouterr().err, "train.py")
    assert all(w in line for w in words), (words, line)
    assert snapshot(place) == before and not (place / "new").exists()


SAMPLE_CASES = {
    "prompt outside the vocabulary": (["--prompt", "ROMEO ☃"], ["--prompt", "'☃'"]),
    "temperature 0": (["--temperature", "0"], ["--temperature 0.0", "> 0", "--greedy"]),
    "temperature nan": (["--temperature", "nan"], ["--temperature nan", "finite"]),
    "top-k 0": (["--top-k", "0"], ["--top-k 0", "1..58"]),
    "top-k above the vocabulary": (["--top-k", "59"], ["--top-k 59", "1..58"]),
    "top-p 1.5": (["--top-p", "1.5"], ["--top-p 1.5", "(0, 1]"]),
    "top-p 0": (["--top-p", "0"], ["--top-p 0.0", "(0, 1]"]),
    "no such step": (["--step", "5"], ["step 5", "available steps: 0, 3, 6"]),
    "zero tokens": (["--max-new-tokens", "0"], ["--max-new-tokens 0", ">= 1"]),
    "out-dir that is a file": (["--out-dir", "{d}/a_file"], ["a_file", "is a file"]),
    "missing out-dir": (["--out-dir", "{d}/nothing"], ["nothing", "does not exist"]),
    "damaged config.json": (["--out-dir", "{d}/bad_config"], ["config.json", "cannot be read"]),
    "damaged tokenizer.json": (["--out-dir", "{d}/bad_tokenizer"], ["tokenizer.json", "cannot be read"]),
}


@pytest.mark.parametrize("case", SAMPLE_CASES)
def test_sample_bad_input(case, place, capsys):
    argv, words = SAMPLE_CASES[case]
    argv = [a.format(d=place) for a in argv]
    if "--out-dir" not in argv:
        argv += ["--out-dir", str(place / "gpt")]
    before = snapshot(place)
    assert sample_main(argv + ["--max-new-tokens", "5"] if "--max-new-tokens" not in argv else argv) == 2
    line = one_line(capsys.readouterr().err, "sample.py")
    assert all(w in line for w in words), (words, line)
    assert snapshot(place) == before


LIBRARY_CASES = {
    "config not divisible": (lambda d: cfg.GPTConfig(n_embd=30, n_head=4), ConfigError, "n_embd 30"),
    "config nan": (lambda d: cfg.TrainConfig(learning_rate=float("nan")), ConfigError, "learning_rate=nan"),
    "config wrong type": (lambda d: cfg.TrainConfig(max_iters=2.5), ConfigError, "max_iters=2.5: expected int"),
    "config bool for an int": (lambda d: cfg.GPTConfig(n_layer=True), ConfigError, "n_layer=True"),
    "override wrong type": (lambda d: cfg.apply_overrides(cfg.GPTConfig(), cfg.TrainConfig(), {"dropout": "x"}),
                            ConfigError, "dropout='x'"),
    "load a missing file": (lambda d: load_text(str(d / "nope.txt")), DataError, "not found"),
    "load an empty file": (lambda d: load_text(str(d / "empty.txt")), DataError, "is empty"),
    "split too short": (lambda d: train_val_split(CharTokenizer("ab").encode("ab" * 5), 8), DataError,
                        "block_size + 1 = 9"),
    "encode outside the vocabulary": (lambda d: CharTokenizer("ab").encode("abc"), ValueError, "'c'"),
    "load_checkpoint of an n-gram run": (lambda d: ckpt.load_checkpoint(d / "bad_tokenizer"), CheckpointError,
                                         "n-gram count model"),
    "load_checkpoint of a file": (lambda d: ckpt.load_checkpoint(d / "a_file"), CheckpointError, "is a file"),
}


@pytest.mark.parametrize("case", LIBRARY_CASES)
def test_library_bad_input(case, place):
    call, error, words = LIBRARY_CASES[case]
    with pytest.raises(error) as info:
        call(place)
    assert isinstance(info.value, ValueError) and words in str(info.value) and "\n" not in str(info.value)
    if error is not ValueError:
        assert isinstance(info.value, JaxgptError)


def test_unreadable_file(place, capsys):
    """Permissions cannot be tested as root (root reads any file): skipped there with the reason."""
    if os.geteuid() == 0:
        pytest.skip("running as root, which reads a chmod 000 file anyway; the OSError path is the same as for "
                    "a broken symlink, tested below")
    p = place / "secret.txt"
    p.write_text("secret\n" * 100)
    p.chmod(0)
    with pytest.raises(DataError, match="cannot read"):
        load_text(str(p))


def test_broken_symlink_is_not_found(place):
    link = place / "dangling.txt"
    link.symlink_to(place / "gone.txt")
    with pytest.raises(DataError, match="not found"):
        load_text(str(link))
    link.unlink()


def test_debug_prints_the_traceback(place):
    with pytest.raises(DataError, match="is empty"):
        train_main(["--data", str(place / "empty.txt"), "--out-dir", str(place / "new"), "--debug"])


def test_an_internal_fault_is_one_line_and_exit_1(place, capsys, monkeypatch):
    """A bug or an OS failure (not the user's input): one line saying so, exit status 1."""
    from jaxgpt import rundir

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rundir, "load_text", broken)
    assert train_main(["--data", str(place / "head.txt"), "--out-dir", str(place / "new")]) == 1
    line = one_line(capsys.readouterr().err, "train.py")
    assert "internal error: OSError" in line and "No space left" in line and "--debug" in line


def test_the_table_is_large_enough():
    assert len(TRAIN_CASES) + len(SAMPLE_CASES) + len(LIBRARY_CASES) >= 25


def test_readme_lists_as_refused_only_what_is_refused():
    """README's bad-input row names the sizes refused at 0; n_layer=0 is a model (ladder-bigram, ladder-pos)."""
    from conftest import REPO
    from jaxgpt.config import GPTConfig

    row = next(line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| a bad flag"))
    assert "a size of 0" not in row and "n_layer=0" in row, row
    assert GPTConfig(n_layer=0).n_layer == 0
