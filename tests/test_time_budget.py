"""--time-budget: the duration parser, the flag checks, the plan, and a budgeted run on an injected clock (wall time
on a busy 2-core machine would make these flaky): max_iters chosen and recorded, shortened when the steps run
slower than planned, and --resume never re-times."""
import itertools
import json
import os
import signal
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxgpt import budget
from jaxgpt import checkpoint as ckpt
from jaxgpt import loop
from jaxgpt.budget import Timing, parse_duration, plan_max_iters, predicted_s
from jaxgpt.cli import parse_train_args, train_main
from jaxgpt.config import GPTConfig, TrainConfig
from jaxgpt.errors import UsageError
from jaxgpt.rundir import Run

SETS = dict(n_layer=1, n_head=2, n_embd=32, block_size=16, batch_size=8, eval_iters=2, eval_interval=8,
            ckpt_interval=8, steps_per_call=2, sample_chars=0, warmup_iters=2, decay_lr="true")
# the injected clock: the command starts at 0; the compiling call runs 5.0 -> 7.8 (0.8 s compile + 2 steps), then
# 2 calls x 2 steps of 1.0 s, an evaluation that compiles (0.7 s) and a compiled one (0.5 s), a first save (1.0 s) and
# a second (0.3 s), and a final pass + sample of 2 s. Evaluations and saves both come at 0 and every 8 steps, so
# predicted: 16.3 + 0.8 + n + (0.5 + 0.3) (1 + ceil(n / 8)) + 2 <= 0.9 * 52 -> n 24 (25, 26 overrun)
READINGS = (0.0, 5.0, 7.8, 11.8, 12.5, 13.0, 13.0, 14.0, 14.0, 14.3, 14.3, 16.3)
TIMING = Timing(elapsed=16.3, step=1.0, compile=0.8, evaluation=0.5, save=0.3, final=2.0)
BUDGET = "52s"
# then the clock at the evaluations at 8 and 16, each before its save: on plan (predicted 28.7 and 37.5 less a save
# and the final pass), or with the steps 8 -> 16 at 1.2x their time: 26.4 + 1.2 x 8.8
ON_PLAN, SLOWER = READINGS + (26.4, 35.2), READINGS + (26.4, 36.96)


class ScriptedClock:
    def __init__(self, readings=ON_PLAN):
        self.readings = list(readings)

    def __call__(self):
        assert self.readings, "the clock was read more often than a budgeted start reads it"
        return self.readings.pop(0)


def args_for(text, out, *extra):
    return ["--preset", "baby", "--data", str(text), "--out-dir", str(out),
            *[a for k, v in SETS.items() for a in ("--set", f"{k}={v}")], *extra]


@pytest.fixture(scope="module")
def text():
    return Path(__file__).parent / "data" / "tinyshakespeare_head.txt"


@pytest.mark.parametrize("given,seconds", [("300s", 300), ("5m", 300), ("1m30s", 90), ("90", 90), ("1.5h", 5400)])
def test_parse_duration(given, seconds):
    assert parse_duration(given) == seconds


@pytest.mark.parametrize("given", ["", "5 minutes", "m", "0s", "-3s", "5x"])
def test_bad_durations_name_the_text(given):
    with pytest.raises(UsageError, match="--time-budget"):
        parse_duration(given)


@pytest.mark.parametrize("extra,match", [(["--resume"], "never re-times"), (["--max-iters", "9"], "drop --max-iters"),
                                         ([], "not a duration")])
def test_flag_conflicts_are_one_line_and_exit_2(text, tmp_path, capsys, extra, match):
    budget_text = "soon" if not extra else "5m"
    assert train_main(args_for(text, tmp_path / "run", "--time-budget", budget_text, *extra)) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_no_budget_means_nothing_timed():
    args = parse_train_args(["--preset", "baby"])
    assert args.time_budget_s == 0.0 and budget.with_budget("run", 0.0) == "run"


def test_plan_is_the_largest_that_fits():
    n = plan_max_iters(52, TIMING, 8, 8, 2)
    assert n == 24
    assert predicted_s(n, TIMING, 8, 8) <= (1 - budget.MARGIN) * 52 < predicted_s(n + 1, TIMING, 8, 8)
    assert plan_max_iters(52, TIMING, 8, 8, 5) == 20  # whole calls only
    assert plan_max_iters(20.0, TIMING, 8, 8) == 0  # the fixed costs alone overrun it


@pytest.mark.parametrize("eval_interval,ckpt_interval", [(8, 8), (8, 6), (6, 8), (5, 10), (10, 4), (7, 1)])
def test_plan_counts_the_loops_evaluations_and_saves(eval_interval, ckpt_interval):
    """The loop's own calls (loop.chunk_sizes): loop._steps evaluates at 0, after a call ending at a multiple of
    eval_interval or at the end, and saves there and after a call ending at a multiple of ckpt_interval."""
    for n in range(1, 40):
        tc = TrainConfig(max_iters=n, lr_decay_iters=n, eval_interval=eval_interval, ckpt_interval=ckpt_interval,
                         steps_per_call=3)
        ends = list(itertools.accumulate(loop.chunk_sizes(0, tc)))
        assert ends[-1] == n
        evals = 1 + sum(k % eval_interval == 0 or k == n for k in ends)
        saves = 1 + sum(k % eval_interval == 0 or k % ckpt_interval == 0 or k == n for k in ends)
        assert predicted_s(n, Timing(0, 0, 0, evaluation=1, save=0, final=0), eval_interval, ckpt_interval) == evals
        assert predicted_s(n, Timing(0, 0, 0, evaluation=0, save=1, final=0), eval_interval, ckpt_interval) == saves


def test_the_first_check_only_starts_the_measurement():
    """2.0 s late at step 8 (the start's one-off costs) and on plan from 8 to 16: the run ends at 48.3 s, inside
    0.95 x 52. A rate taken from the plan to step 8 (1.2x) would have projected 52.2 s and cut the run."""
    tc = TrainConfig(max_iters=24, lr_decay_iters=24, eval_interval=8, ckpt_interval=8, steps_per_call=2)
    run = Run(GPTConfig(), tc, Path("unused"), time_budget_s=52.0, started_s=0.0)
    pace = budget.Pace(run, TIMING, ScriptedClock((28.4, 28.4 + 8.8)), log=pytest.fail)
    assert pace.check(run, 8) is None and pace.check(run, 16) is None


def _state_leaves(out):
    with ckpt.manager(out, read_only=True) as mgr:
        state, meta, skipped = ckpt.restore_latest(mgr)
    return [np.asarray(x) for x in jax.tree.leaves(state)], meta


def _steps_log(out):
    return [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]


def test_budgeted_run_records_its_plan_and_resumes_without_retiming(text, tmp_path, capsys):
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert train_main(args_for(text, straight, "--time-budget", BUDGET), clock=ScriptedClock()) == 0
    config = json.loads((straight / "config.json").read_text())["train"]
    assert (config["max_iters"], config["lr_decay_iters"]) == (24, 24)
    out = capsys.readouterr().out  # what differs from the preset and where the rest is, not the config's JSON
    assert "max_iters=24" in out and "n_embd=32" in out and str(straight / "config.json") in out, out
    assert '"n_embd"' not in out and '"beta2"' not in out, out
    # every step's training loss, a curve however few the evaluations (here 4: steps 0, 8, 16, 24)
    steps = _steps_log(straight)
    assert [r["step"] for r in steps] == list(range(1, 25)) and all(r["loss"] > 0 for r in steps), steps
    assert len(records := [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]) == 4
    assert [r["step"] for r in records] == [0, 8, 16, 24]
    want, meta = _state_leaves(straight)
    assert meta["step"] == 24 and meta["config"]["train"]["max_iters"] == 24

    sent = []

    def interrupt(name, step=None, **_):
        if name == "progress" and step >= 10 and not sent:
            sent.append(os.kill(os.getpid(), signal.SIGINT))
    assert train_main(args_for(text, broken, "--time-budget", BUDGET), on_event=interrupt,
                      clock=ScriptedClock()) == 128 + signal.SIGINT
    assert train_main(["--out-dir", str(broken), "--resume"], clock=ScriptedClock(())) == 0  # a read would fail
    got, meta = _state_leaves(broken)
    assert meta["step"] == 24
    assert _steps_log(broken) == steps  # the steps after the resumed checkpoint logged once, as a straight run's
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_steps_slower_than_planned_shorten_the_run_from_that_evaluation(text, tmp_path, capsys):
    """At 1.2x from step 8 to 16, the rest at 1.2x (37.0 + 1.2 x 11.1 s) would end past 0.95 x 52 s: the largest
    max_iters that ends by 0.9 x 52 with a new compile is 20 (22 would not). config.json and the checkpoints from
    step 16 on hold it; a run stopped at 16 resumes to the same state as one that was not."""
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert train_main(args_for(text, straight, "--time-budget", BUDGET), clock=ScriptedClock(SLOWER)) == 0
    assert "steps 8-16 ran at 1.20x the planned time -> max_iters 20 (was 24" in capsys.readouterr().out
    config = json.loads((straight / "config.json").read_text())["train"]
    assert (config["max_iters"], config["lr_decay_iters"]) == (20, 20)
    records = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 8, 16, 20] and "val_loss_full" in records[-1]
    assert [r["step"] for r in _steps_log(straight)] == list(range(1, 21))
    with ckpt.manager(straight, read_only=True) as mgr:
        assert [ckpt.read_meta(mgr, s)["config"]["train"]["max_iters"] for s in (8, 16, 20)] == [24, 20, 20]
    want, _ = _state_leaves(straight)

    sent = []

    def interrupt(name, step=None, **_):
        if name == "progress" and step >= 16 and not sent:  # read before the evaluation at 16
            sent.append(os.kill(os.getpid(), signal.SIGINT))
    assert train_main(args_for(text, broken, "--time-budget", BUDGET), on_event=interrupt,
                      clock=ScriptedClock(SLOWER)) == 128 + signal.SIGINT
    assert train_main(["--out-dir", str(broken), "--resume"], clock=ScriptedClock(())) == 0
    got, meta = _state_leaves(broken)
    assert meta["step"] == 20 and all(np.array_equal(a, b) for a, b in zip(got, want))
