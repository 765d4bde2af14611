"""`python -m jaxgpt train|sample` from an empty folder, as the console commands jaxgpt-train / jaxgpt-sample run
(.ci/run runs those from a non-editable install in a fresh virtual environment)."""
import os
import subprocess
import sys
import tomllib

from conftest import REPO

from jaxgpt.__main__ import main


def test_console_scripts_are_declared():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"jaxgpt-train": "jaxgpt.cli:train_main", "jaxgpt-sample": "jaxgpt.cli:sample_main"}


def test_python_m_jaxgpt_needs_a_command(capsys):
    assert main([]) == 2 and main(["fit"]) == 2
    assert "unknown command 'fit'" in capsys.readouterr().err


def test_python_m_jaxgpt_trains_and_samples_from_an_empty_folder(tmp_path):
    data = tmp_path / "input.txt"
    data.write_text((REPO / "tests" / "data" / "tinyshakespeare_head.txt").read_text(encoding="utf-8")[:20000],
                    encoding="utf-8")
    work = tmp_path / "empty"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = lambda *argv: subprocess.run([sys.executable, "-m", "jaxgpt", *argv], cwd=work, env=env,
                                       capture_output=True, text=True, timeout=300)
    train = run("train", "--preset", "bigram", "--max-iters", "50", "--data", str(data))
    assert train.returncode == 0, train.stderr
    assert (work / "out" / "bigram" / "checkpoints").is_dir()
    sample = run("sample", "--out-dir", "out/bigram", "--max-new-tokens", "40", "--prompt", "ROMEO:")
    assert sample.returncode == 0, sample.stderr
    assert "ROMEO:" in sample.stdout and len(sample.stdout.split("ROMEO:", 1)[1].strip()) > 0
