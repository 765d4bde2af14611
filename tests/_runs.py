"""Helpers for tests that compare whole runs: one tiny config, its final TrainState and its timing-free metrics."""
import json
from pathlib import Path

import jax
import numpy as np

from conftest import HEAD_TEXT
from jaxgpt import checkpoint as ckpt

TIMING = ("tokens_per_s", "elapsed_s", "mfu")  # the fields of a metrics record that depend on the machine's load
STEPS = 8
SETS = dict(n_layer=1, n_head=2, n_embd=16, block_size=8, batch_size=4, dropout=0.1, eval_iters=2, eval_interval=4,
            ckpt_interval=4, steps_per_call=2, keep_checkpoints=1, sample_chars=0, lr_decay_iters=STEPS,
            warmup_iters=2, learning_rate=3e-3)


def text_file(folder: Path) -> Path:
    p = folder / "small.txt"
    p.write_text(HEAD_TEXT.read_text()[:5000])
    return p


def argv(data: Path, out: Path, *extra: str, **sets) -> list[str]:
    """A new run of the character model (`baby`, named: the default preset is the BPE one) at the tiny shape."""
    pairs = {**SETS, **sets}
    return ["--preset", "baby", "--data", str(data), "--out-dir", str(out), "--max-iters", str(STEPS), "--set",
            *[f"{k}={v}" for k, v in pairs.items()], *extra]


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def untimed(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records(out)]


def final_state(out: Path):
    with ckpt.manager(out, read_only=True) as mgr:
        state, meta, skipped = ckpt.restore_latest(mgr)
    assert not skipped
    return state, meta["step"]


def assert_same_run(out: Path, reference: Path) -> None:
    """Bit-identical final TrainState (params, Adam moments, step, key) and the same metrics apart from timing."""
    (a, step_a), (b, step_b) = final_state(out), final_state(reference)
    assert step_a == step_b == STEPS
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert untimed(out) == untimed(reference)
