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
