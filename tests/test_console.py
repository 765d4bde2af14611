"""`python -m jaxgpt train|sample` from an empty folder, as the console commands jaxgpt-train / jaxgpt-sample run
(.ci/run runs those for real, from a non-editable install in a fresh virtual environment)."""
import runpy
import sys
import tomllib

import pytest

from conftest import REPO

from jaxgpt.__main__ import main


def test_console_scripts_are_declared():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"jaxgpt-train": "jaxgpt.cli:train_main", "jaxgpt-sample": "jaxgpt.cli:sample_main",
                       "jaxgpt-prepare": "jaxgpt.cli:prepare_main"}


def test_python_m_jaxgpt_needs_a_command(capsys):
    assert main([]) == 2 and main(["fit"]) == 2
    assert "unknown command 'fit'" in capsys.readouterr().err


def test_python_m_jaxgpt_trains_and_samples_from_an_empty_folder(tmp_path, monkeypatch, capsys):
    """`python -m jaxgpt` as the interpreter runs it (runpy, in-process: no second jax start-up, the compiled
    programs shared with the suite), from a folder that holds nothing of the repository."""
    data = tmp_path / "input.txt"
    data.write_text("hello world, the quick brown fox.\n" * 200)  # test_loggers.py's run: its programs, compiled once
    work = tmp_path / "empty"
    work.mkdir()
    monkeypatch.chdir(work)

    def run(*argv) -> int:
        monkeypatch.setattr(sys, "argv", ["python -m jaxgpt", *argv])
        monkeypatch.delitem(sys.modules, "jaxgpt.__main__", raising=False)  # run as the interpreter would: fresh
        with pytest.raises(SystemExit) as done:
            runpy.run_module("jaxgpt", run_name="__main__", alter_sys=True)
        return done.value.code

    assert run("train", "--preset", "bigram", "--data", str(data), "--max-iters", "20", "--set", "eval_interval=10",
               "eval_iters=2", "sample_chars=5") == 0, capsys.readouterr().err
    assert (work / "out" / "bigram" / "checkpoints").is_dir()
    capsys.readouterr()
    assert run("sample", "--out-dir", "out/bigram", "--max-new-tokens", "40", "--prompt", "the ") == 0
    out = capsys.readouterr().out
    assert "the " in out and len(out.split("the ", 1)[1].strip()) > 0


# ---------------------------------------------------------------------------------------------------- import

def _import_err(capsys, *argv) -> str:
    """`python -m jaxgpt import ARGV`: exit 2 and one line on stderr, returned."""
    assert main(["import", *map(str, argv)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m jaxgpt import: error: "), err
    return err


def test_import_names_the_missing_extra(tmp_path, capsys, monkeypatch):
    (tmp_path / "ckpt.pt").write_bytes(b"not read: torch is missing")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError, as without the extra
    assert "pip install 'jaxgpt[torch]'" in _import_err(capsys, tmp_path / "ckpt.pt", "--out-dir", tmp_path / "r")
    assert "pip install 'jaxgpt[hf]'" in _import_err(capsys, tmp_path / "hf", "--out-dir", tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_import_says_what_the_path_holds(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    err = _import_err(capsys, tmp_path / "empty", "--out-dir", tmp_path / "r")
    assert "holds nothing to import" in err and "no tokenizer" not in err, err
    pytest.importorskip("torch", reason="without torch a ckpt.pt is refused for the missing extra (tested above)")
    (tmp_path / "ckpt.pt").write_bytes(b"junk, not a checkpoint")
    err = _import_err(capsys, tmp_path / "ckpt.pt", "--out-dir", tmp_path / "r")
    assert "not a loadable nanoGPT checkpoint" in err and "no tokenizer" not in err, err
    assert not (tmp_path / "r").exists()


def test_import_help_shows_the_whole_description(capsys):
    with pytest.raises(SystemExit) as done:
        main(["import", "--help"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Hugging Face GPT-2 directory as a jaxgpt run folder" in out, out


@pytest.mark.parametrize("argv0, command, usage", [
    ("/venv/bin/jaxgpt-train", "train", "usage: jaxgpt-train "),
    ("/venv/bin/jaxgpt-sample", "sample", "usage: jaxgpt-sample "),
    ("/src/jaxgpt/__main__.py", "train", "usage: python -m jaxgpt train "),
    ("/src/jaxgpt/__main__.py", "sample", "usage: python -m jaxgpt sample "),
    ("train.py", "train", "usage: train.py "),
    ("sample.py", "sample", "usage: sample.py "),
    ("/venv/bin/jaxgpt-prepare", "prepare", "usage: jaxgpt-prepare "),
    ("/src/jaxgpt/__main__.py", "prepare", "usage: python -m jaxgpt prepare ")])
def test_help_names_the_command_typed(argv0, command, usage, monkeypatch, capsys):
    from jaxgpt.cli import prepare_main, sample_main, train_main

    monkeypatch.setattr(sys, "argv", [argv0, "--help"])
    with pytest.raises(SystemExit) as done:
        {"train": train_main, "sample": sample_main, "prepare": prepare_main}[command](["--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(usage)


def test_python_m_jaxgpt_help_goes_to_stdout(capsys):
    assert main(["--help"]) == 0
    out, err = capsys.readouterr()
    assert "python -m jaxgpt {train,sample,import,prepare}" in out and err == ""
