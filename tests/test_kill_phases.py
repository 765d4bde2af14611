"""kill -9 at named phases of real train.py processes (the test-only pause hook, JAXGPT_TEST_PAUSE_AT): whatever
was on disk then, the next command finishes the run bit-identical to an uninterrupted one. tests/test_checkpoint.py
kills mid-save and between a commit and the deletion of old steps; these are the other phases."""
import os
import signal
import subprocess
import sys
import time

import pytest

from _runs import STEPS, argv, assert_same_run, records, text_file
from conftest import REPO
from jaxgpt import checkpoint as ckpt
from jaxgpt.cli import train_main


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return text_file(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    assert train_main(argv(data, out)) == 0
    return out


def kill_at(phase: str, args: list[str], tmp_path) -> str:
    """Start train.py with `args`, wait until it pauses at `phase`, SIGKILL it; returns what the marker says."""
    marker = tmp_path / f"reached-{phase}"
    env = {**os.environ, "JAXGPT_TEST_PAUSE_AT": phase, "JAXGPT_TEST_PAUSE_MARKER": str(marker)}
    log = tmp_path / f"{phase}.log"
    with log.open("w") as f:
        proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], stdout=f, stderr=f, env=env)
    t0 = time.monotonic()
    while not marker.exists() and proc.poll() is None and time.monotonic() - t0 < 240:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists(), f"{phase} never reached: {log.read_text()[-2000:]}"
    return marker.read_text()


def test_kill_before_the_first_checkpoint_then_the_same_command(data, straight, tmp_path, capsys):
    """Only config.json and tokenizer.json exist: nothing to lose, so the original command runs again."""
    out = tmp_path / "run"
    kill_at("before-first-checkpoint", argv(data, out), tmp_path)
    assert (out / "config.json").is_file() and not ckpt.has_checkpoints(out) and not records(out)
    assert train_main(argv(data, out)) == 0
    assert_same_run(out, straight)


def test_kill_while_saving_step_0_then_resume(data, straight, tmp_path):
    """The step-0 record is written and its save in flight (or just done): --resume starts or continues it."""
    out = tmp_path / "run"
    assert "'step': 0" in kill_at("saving@0", argv(data, out), tmp_path)
    assert [r["step"] for r in records(out)] == [0]
    assert train_main(["--out-dir", str(out), "--resume"]) == 0
    assert_same_run(out, straight)


def test_kill_during_the_final_full_pass_then_resume(data, straight, tmp_path):
    out = tmp_path / "run"
    kill_at("final-full-pass", argv(data, out), tmp_path)
    assert max(ckpt.has_checkpoints(out)) < STEPS and "val_loss_full" not in records(out)[-1]
    assert train_main(["--out-dir", str(out), "--resume"]) == 0
    assert_same_run(out, straight)
    elapsed = [r["elapsed_s"] for r in records(out)]
    assert elapsed == sorted(elapsed), "elapsed_s restarted on --resume"


def test_kill_after_the_last_checkpoint_then_resume_says_done(data, straight, tmp_path, capsys):
    out = tmp_path / "run"
    kill_at("done", argv(data, out), tmp_path)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert train_main(["--out-dir", str(out), "--resume"]) == 0  # a job that always resumes must not fail
    printed = capsys.readouterr()
    assert f"already reached step {STEPS}" in printed.out and printed.out.count("\n") == 1, printed
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert_same_run(out, straight)
