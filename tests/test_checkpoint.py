"""Checkpoints: exact resume, signals, kills (real train.py subprocesses), damaged files, shape and config checks.

Every run here is one tiny config (1 layer, 32 wide, block 16, dropout on so its keys matter) trained for STEPS
steps with a checkpoint every 8; the uninterrupted run is computed once and every other path must reproduce its
final TrainState bit for bit.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from conftest import HEAD_TEXT, REPO
from jaxgpt import checkpoint as ckpt
from jaxgpt import loop
from jaxgpt.cli import train_main
from jaxgpt.config import from_dict
from jaxgpt.training import eval_params

STEPS = 32
TINY_SETS = dict(n_layer=1, n_head=2, n_embd=32, block_size=16, batch_size=8, dropout=0.1, eval_iters=2,
                 eval_interval=8, ckpt_interval=8, steps_per_call=2, keep_checkpoints=2, sample_chars=0,
                 lr_decay_iters=STEPS, warmup_iters=4)


def tiny_args(data, out, *extra, **sets):
    pairs = {**TINY_SETS, **sets}
    return ["--preset", "baby", "--data", str(data), "--out-dir", str(out), "--max-iters", str(STEPS),
            *[a for k, v in pairs.items() for a in ("--set", f"{k}={v}")], *extra]


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    p = tmp_path_factory.mktemp("data") / "small.txt"
    p.write_text(HEAD_TEXT.read_text()[:20000])
    return p


@pytest.fixture(scope="module")
def straight(text, tmp_path_factory):
    """The uninterrupted run: STEPS steps in one go."""
    out = tmp_path_factory.mktemp("straight") / "run"
    assert train_main(tiny_args(text, out)) == 0
    return out


def final_state(out):
    with ckpt.manager(out, read_only=True) as mgr:
        state, meta, skipped = ckpt.restore_latest(mgr)
    assert not skipped and meta["step"] == STEPS
    return state


def assert_same_run(out, straight):
    """Same TrainState (params, Adam moments, step, key) bit for bit, and the same losses at the same steps."""
    a, b = final_state(out), final_state(straight)
    diffs = [float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
    assert max(diffs) == 0.0
    got, want = (metrics(d) for d in (out, straight))
    assert [r["step"] for r in got] == sorted({r["step"] for r in got}), "duplicate or unordered steps"
    want_steps = [r["step"] for r in want]
    assert set(want_steps) <= {r["step"] for r in got}, "missing steps"
    by_step = {r["step"]: r for r in got}
    assert [(by_step[s]["train_loss"], by_step[s]["val_loss"]) for s in want_steps] == \
           [(r["train_loss"], r["val_loss"]) for r in want]


def metrics(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def test_resume_is_exact(text, straight, tmp_path):
    out = tmp_path / "run"
    assert train_main(tiny_args(text, out, "--max-iters", str(STEPS // 2))) == 0
    assert train_main(["--out-dir", str(out), "--resume", "--max-iters", str(STEPS)]) == 0
    assert_same_run(out, straight)
    # the first half ended with a full-pass eval at STEPS // 2; the straight run has that step without it
    assert [r["step"] for r in metrics(out)] == [r["step"] for r in metrics(straight)]


def test_signals_save_and_resume_exactly(text, straight, tmp_path, capsys):
    """SIGTERM then SIGINT arrive mid-interval (not on a checkpoint step); each saves that step and exits 128+n."""
    out = tmp_path / "run"

    def signal_at(steps_done, signum):
        """An on_event that sends `signum` once the loop has read the metrics of `steps_done` steps (after
        dispatching the next call)."""
        sent = []

        def on_event(name, step=None, **_):
            if name == "progress" and step >= steps_done and not sent:
                sent.append(os.kill(os.getpid(), signum))
        return on_event

    # calls of 2 steps: metrics of 2..4 are read once the call to 6 is running
    assert train_main(tiny_args(text, out), on_event=signal_at(4, signal.SIGTERM)) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "SIGTERM at step 6" in err and f"--out-dir {out} --resume" in err
    assert ckpt.has_checkpoints(out)[-1] == 6
    assert train_main(["--out-dir", str(out), "--resume"], on_event=signal_at(12, signal.SIGINT)) == 128 + signal.SIGINT
    assert "SIGINT at step 14" in capsys.readouterr().err
    assert ckpt.has_checkpoints(out)[-1] == 14
    assert train_main(["--out-dir", str(out), "--resume"]) == 0
    assert_same_run(out, straight)


def _flip(path: Path):
    b = bytearray(path.read_bytes())
    for i in range(len(b) // 2, min(len(b), len(b) // 2 + 16)):
        b[i] ^= 0x5A
    path.write_bytes(bytes(b))


def _truncate(path: Path):
    os.truncate(path, path.stat().st_size // 3)


def _biggest(folder: Path) -> Path:
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


DAMAGE = {
    "flipped params bytes": lambda step: _flip(_biggest(step / "params")),
    "truncated optimizer state": lambda step: _truncate(_biggest(step / "train")),
    "garbage meta": lambda step: (step / "meta" / "metadata").write_text("{not json"),
    "half-deleted step": lambda step: (shutil.rmtree(step / "params"), (step / "_CHECKPOINT_METADATA").unlink()),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_checkpoint_falls_back(damage, straight, tmp_path, capsys):
    """The newest step damaged by hand: resume warns, sets it aside, continues from the previous complete step,
    and still ends bit-identical to the straight run. Asking for that step explicitly is a one-line error."""
    out = tmp_path / "run"
    shutil.copytree(straight, out)
    newest = out / ckpt.CKPT_DIR / str(STEPS)
    DAMAGE[damage](newest)
    from jaxgpt.cli import sample_main
    rc = sample_main(["--out-dir", str(out), "--step", str(STEPS), "--max-new-tokens", "1"])
    err = capsys.readouterr().err.strip()
    if "optimizer" in damage:  # sampling never reads the optimizer state, so it does not notice
        assert rc == 0 and not err
    else:
        assert rc == 2 and len(err.splitlines()) == 1 and f"step {STEPS}" in err, err

    assert train_main(["--out-dir", str(out), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert f"warning: checkpoint step {STEPS}" in printed and f"resumed at step {STEPS - 8}" in printed
    assert (out / ckpt.BROKEN_DIR / str(STEPS)).is_dir()
    assert_same_run(out, straight)


def test_out_dir_with_checkpoints_is_refused_untouched(text, straight, capsys):
    before = {p: p.stat().st_mtime_ns for p in straight.rglob("*")}
    assert train_main(tiny_args(text, straight)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume" in err
    assert {p: p.stat().st_mtime_ns for p in straight.rglob("*")} == before


@pytest.mark.parametrize("argv, words", [
    (["--set", "n_embd=64"], ["n_embd=64", "checkpoint: 32"]),
    (["--set", "weight_decay=0.5"], ["weight_decay=0.5", "learning_rate, grad_clip, warmup_iters"]),
    (["--seed", "7"], ["seed=7"]),
    (["--preset", "lecture"], ["--preset lecture"]),
    (["--init-from", "x"], ["--init-from"]),
])
def test_resume_conflicts_are_one_line_errors(argv, words, straight, capsys):
    assert train_main(["--out-dir", str(straight), "--resume", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("train.py: error: ") and err.count("\n") == 1
    assert all(w in err for w in words), err


def test_resume_without_checkpoints_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for d in ("empty", "missing"):
        assert train_main(["--out-dir", str(tmp_path / d), "--resume"]) == 2
        assert "train.py: error:" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()


def test_other_shape_is_refused(text, straight, tmp_path, capsys):
    """The checkpoint of one model read into another shape: a clear error naming the leaf and both shapes."""
    assert train_main(["--init-from", str(straight), "--out-dir", str(tmp_path / "new"), "--set", "n_embd=64"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(1, 32) in the checkpoint but (1, 64) in the model" in err, err
    assert not (tmp_path / "new").exists()
    meta = ckpt.latest_meta(straight)
    mc, tc = from_dict(meta["config"])
    from dataclasses import replace
    other = replace(mc, n_layer=2)
    with ckpt.manager(straight, read_only=True) as mgr:
        with pytest.raises(ckpt.CheckpointError, match=r"in the checkpoint but \(2, "):
            ckpt.restore_step(mgr, STEPS, ckpt.abstract_state(other, tc))


def same_tree(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_init_from_starts_a_new_run_from_the_weights(straight, tmp_path, capsys):
    out = tmp_path / "new"
    assert train_main(["--init-from", str(straight), "--out-dir", str(out), "--max-iters", "2"]) == 0
    assert f"initialised from {straight} step {STEPS}" in capsys.readouterr().out
    with ckpt.manager(out, read_only=True) as mgr:
        first, meta = ckpt.restore_step(mgr, 0)
    base = final_state(straight)
    assert ckpt.has_checkpoints(out) == [0, 2] and meta["config"]["train"]["max_iters"] == 2
    assert same_tree(first.params, eval_params(base))  # the weights the other run reports (baby: its average)
    assert int(first.step) == 0 and not same_tree(first.opt_state, base.opt_state)  # a fresh optimizer


def test_init_from_with_lora_adds_adapters_only(straight, text):
    """--set lora_rank=4: every base leaf comes from the checkpoint; the adapters are fresh (B = 0, so the model
    starts equal to the base). That only adapters then train is make_optimizer's (tests/test_lora.py)."""
    from dataclasses import replace
    from jaxgpt.cli import build_run, parse_train_args
    run = build_run(parse_train_args(["--init-from", str(straight), "--out-dir", "unused", "--set", "lora_rank=4"]))
    run = replace(run, model=replace(run.model, vocab_size=58))
    state, _ = loop.make_state(run)
    flat = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(state.params)}
    reported = eval_params(final_state(straight))  # the checkpoint's params item: baby's moving average
    base = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(reported)}
    adapters = {k: x for k, x in flat.items() if "lora_" in k}
    assert adapters and set(flat) == set(base) | set(adapters)
    assert all(np.array_equal(flat[k], base[k]) for k in base)
    assert all(not np.any(x) for k, x in adapters.items() if "lora_b" in k)
    assert all(np.any(x) for k, x in adapters.items() if "lora_a" in k)


# ---------------------------------------------------------------------------------------------------- kill -9

def _tmp_saves(d: Path, after: int):
    return [p for p in d.glob("*.orbax-checkpoint-tmp*") if int(p.name.split(".")[0]) > after] if d.is_dir() else []


def _poll(proc, found, timeout=240):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout and proc.poll() is None:
        hit = found()
        if hit:
            return hit
        time.sleep(0.002)
    return None


def test_kill_9_anywhere_then_resume(text, straight, tmp_path):
    """SIGKILL real train.py processes mid-save (asserted: the temp folder is still there afterwards) and right
    after a step is committed (when Orbax deletes old steps); --resume then finishes bit-identical to straight."""
    out, ck = tmp_path / "run", tmp_path / "run" / ckpt.CKPT_DIR
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    logs = []

    def start(argv):
        log = open(tmp_path / f"log{len(logs)}.txt", "w")
        logs.append(log.name)
        return subprocess.Popen([sys.executable, str(REPO / "train.py"), *argv], stdout=log, stderr=log, env=env)

    mid_save = 0
    for attempt in range(3):  # kill during a save; a save that finishes in the gap between poll and kill is retried
        done = ckpt.has_checkpoints(out)
        proc = start(["--out-dir", str(out), "--resume"] if done else tiny_args(text, out))
        tmp = _poll(proc, lambda: _tmp_saves(ck, max([8] + done)))  # the save of step 16 or later
        assert tmp, f"no save seen before the run ended: {Path(logs[-1]).read_text()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if tmp[0].exists():
            mid_save += 1
            break
    assert mid_save == 1, "no kill landed during a save in 3 attempts"

    restored = ckpt.has_checkpoints(out)
    proc = start(["--out-dir", str(out), "--resume"])
    committed = _poll(proc, lambda: [s for s in ckpt.has_checkpoints(out) if s > restored[-1]])
    assert committed, Path(logs[-1]).read_text()[-2000:]
    proc.send_signal(signal.SIGKILL)  # the commit of a step is followed by deleting the oldest: kill in between
    proc.wait()

    if ckpt.has_checkpoints(out)[-1] < STEPS:  # else the kill came after the last save: nothing left to train
        proc = start(["--out-dir", str(out), "--resume"])
        assert proc.wait(timeout=240) == 0, Path(logs[-1]).read_text()[-3000:]
        assert "resumed at step" in Path(logs[-1]).read_text()
    assert not list(ck.glob("*.orbax-checkpoint-tmp*"))
    assert_same_run(out, straight)
