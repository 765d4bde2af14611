"""`train.py --time-budget 5m`: choose max_iters so the whole command ends within a wall-clock budget.

Before config.json and the step-0 checkpoint are written, `fit_to_budget` runs on a throw-away copy of the fresh
state everything the run will do once compiled: a few training calls, two evaluations, two checkpoint saves (to a
temporary folder), the final full pass and the closing sample. The first of each pays its compilation or set-up, so
the real run finds them compiled (same shapes): each of its evaluations and saves is counted at the second one's
time, and the final pass and sample, which run once, with their compilation (the estimate errs long by that). Only
the training call compiles again (max_iters and lr_decay_iters are part of its program), which the plan counts once,
and max_iters is a multiple of steps_per_call so no other call length compiles.
From the time already spent (counted from the process start), the time per step and the fixed costs it fixes
`max_iters` and `lr_decay_iters`; they go into config.json and every checkpoint like any other field, so
`--resume` continues the same schedule and never re-times. A machine's speed drifts after the timing, so the run's
`Pace` compares each evaluation's clock with the plan and may shorten both (never lengthen them), before that step's
checkpoint. The clock is a parameter so tests can inject one.
"""
from __future__ import annotations

import bisect
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import checkpoint as ckpt
from . import sharding
from .errors import RunError, UsageError
from .rundir import Run
from .sampling import generate
from .training import estimate_loss, evaluate_full, make_keys, train_steps_jit

MARGIN = 0.10        # share of the budget the plan keeps free (loss.png, exit, drift); Pace re-plans when a slower
                     # machine would use half of it (a 2-core VM's step ran at 1.18x the timed one: 4 s over B at
                     # 0.10 before Pace; bench/RESULTS.md, round 8)
TIMED_CALLS = 2      # compiled training calls timed after the one that compiles


def parse_duration(text: str) -> float:
    """'300s', '5m', '1h', '90' (seconds), '1m30s' -> seconds; UsageError naming the text otherwise."""
    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if not text.strip() or parts is None or not any(parts.groups()):
        raise UsageError(f"--time-budget {text!r} is not a duration: give e.g. 300s, 5m, 1m30s or 1h")
    h, m, s = (float(g or 0) for g in parts.groups())
    seconds = 3600 * h + 60 * m + s
    if seconds <= 0:
        raise UsageError(f"--time-budget {text!r} must be longer than 0 s")
    return seconds


def process_age_s() -> float:
    """Seconds since this process started (Linux /proc; 0 elsewhere), so the budget counts interpreter start-up."""
    try:
        start_ticks = float(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
        return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass(frozen=True)
class Timing:
    """What fit_to_budget measured, in seconds."""
    elapsed: float      # from the command's start to the end of timing
    step: float         # one optimizer step, compiled
    compile: float      # compiling the training call (the real run compiles it once more, for its max_iters)
    evaluation: float   # one compiled estimate_loss of both splits (the first call's compile is in elapsed)
    save: float         # one checkpoint save until written, after the first (orbax's set-up is in elapsed)
    final: float        # the final full pass plus the closing sample (first calls, compilation included)


def plan_max_iters(budget_s: float, timing: Timing, eval_interval: int, ckpt_interval: int,
                   steps_per_call: int = 1) -> int:
    """The largest max_iters whose predicted run (evaluations at 0, every eval_interval and the end, saves at those
    and every ckpt_interval, then the final pass and sample) ends by (1 - MARGIN) * budget_s, rounded down to whole
    calls of steps_per_call; 0 when not even one call fits. A bisection: the prediction grows with max_iters."""
    limit = (1.0 - MARGIN) * budget_s
    lo, hi = 0, max(int((limit - timing.elapsed) / timing.step) + 1, 1)  # hi steps alone would overrun
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if predicted_s(mid, timing, eval_interval, ckpt_interval) <= limit else (lo, mid - 1)
    return lo - lo % steps_per_call


def predicted_s(max_iters: int, timing: Timing, eval_interval: int, ckpt_interval: int) -> float:
    """The run's predicted wall time from the command's start, for `max_iters` steps (loop._steps' schedule)."""
    n, e, c = max_iters, eval_interval, ckpt_interval
    n_evals = 1 + n // e + (n % e != 0)                                                # at 0, every e, the end
    n_saves = 1 + n // e + n // c - n // math.lcm(e, c) + (n % e != 0 and n % c != 0)  # there and every c
    return (timing.elapsed + timing.compile + max_iters * timing.step + n_evals * timing.evaluation
            + n_saves * timing.save + timing.final)


def measure(run: Run, state, mesh, train_np: np.ndarray, val_np: np.ndarray, clock: Callable[[], float]) -> Timing:
    """Time the run's compiled pieces on a copy of `state` (training calls donate their state; this one is spent)."""
    mc, tc = run.model, run.train
    started = clock() if run.started_s is None else run.started_s
    splits = {"train": sharding.put_replicated(train_np, mesh), "val": sharding.put_replicated(val_np, mesh)}
    copy = jax.tree.map(jnp.copy, state)
    t_compile = clock()
    copy, metrics = train_steps_jit(copy, splits["train"], mc, tc, tc.steps_per_call)  # compiles
    jax.block_until_ready(metrics)
    t0 = clock()
    for _ in range(TIMED_CALLS):
        copy, metrics = train_steps_jit(copy, splits["train"], mc, tc, tc.steps_per_call)
        jax.block_until_ready(metrics)
    t1 = clock()
    with sharding.mesh_context(mesh):  # twice: the first compiles, and every evaluation of the real run is compiled
        jax.block_until_ready(estimate_loss(copy.params, splits, make_keys(tc.seed)["eval"], mc, tc))
        t_eval = clock()
        jax.block_until_ready(estimate_loss(copy.params, splits, make_keys(tc.seed)["eval"], mc, tc))
    t2 = clock()
    save = _save_s(copy, clock)
    t_final = clock()
    evaluate_full(copy.params, val_np, mc)
    if tc.sample_chars:
        jax.block_until_ready(generate(copy.params, mc, jnp.zeros((1, 1), jnp.int32), tc.sample_chars,
                                       make_keys(tc.seed)["sample"]))
    t3 = clock()
    step = (t1 - t0) / (TIMED_CALLS * tc.steps_per_call)
    return Timing(elapsed=t3 - started, step=step, compile=max(t0 - t_compile - tc.steps_per_call * step, 0.0),
                  evaluation=t2 - t_eval, save=save, final=t3 - t_final)


def _save_s(state, clock: Callable[[], float]) -> float:
    """Seconds a checkpoint save of `state` takes until written, timed on the second of two saves to a temporary
    folder (the first sets orbax up, as the run's step-0 save would). 0 with several processes: their saves are
    collective, to one shared folder."""
    if jax.process_count() > 1:
        return 0.0
    with tempfile.TemporaryDirectory() as tmp, ckpt.manager(Path(tmp)) as mgr:
        for i in range(2):
            t0 = clock()
            ckpt.save(mgr, replace(state, step=state.step + i), {})
            mgr.wait_until_finished()
            t1 = clock()
    return t1 - t0


def fit_to_budget(run: Run, state, mesh, train_np: np.ndarray, val_np: np.ndarray, log=print,
                  clock: Callable[[], float] = time.monotonic) -> tuple[Run, Pace | None]:
    """`run` with max_iters (and lr_decay_iters) chosen so the whole command fits run.time_budget_s, and the Pace
    that checks it at each evaluation; (`run`, None) when it has no budget or resumes (a resumed run keeps its
    recorded max_iters)."""
    if not run.time_budget_s or run.resume:
        return run, None
    timing = measure(run, state, mesh, train_np, val_np, clock)
    n = _agreed(plan_max_iters(run.time_budget_s, timing, run.train.eval_interval, run.train.ckpt_interval,
                               run.train.steps_per_call))
    if n < 1:
        raise RunError(f"--time-budget {run.time_budget_s:g}s leaves no time to train: {timing.elapsed:.1f} s spent "
                       f"starting and compiling, {timing.final:.1f} s needed for the final pass and sample; "
                       f"give a longer budget")
    log(f"time budget {run.time_budget_s:g} s: {timing.step * 1e3:.1f} ms/step, {timing.elapsed:.1f} s spent starting, "
        f"compiling and timing -> max_iters {n} (predicted "
        f"{predicted_s(n, timing, run.train.eval_interval, run.train.ckpt_interval):.0f} s)")
    run = replace(run, train=replace(run.train, max_iters=n, lr_decay_iters=n))
    return run, Pace(run, timing, clock, log)


class Pace:
    """A budgeted run's check at each evaluation before the last. The steps since the first check took r x the
    planned time (the machine's speed drifts: 1.18x on a 2-core VM, bench/RESULTS.md round 8); when the rest of the
    run at r would end past (1 - MARGIN / 2) of the budget, `check` gives the run with the largest shorter max_iters
    (and lr_decay_iters) that ends by (1 - MARGIN) of it at r, its training call's new compile included. The first
    check only starts the measurement: the window before it holds the start's one-off costs (the compile, the
    config printout), and a rate from it re-planned a steady run (round 9). It never lengthens a run: a plan that
    errs short costs steps, one that errs long costs the budget."""

    def __init__(self, run: Run, timing: Timing, clock: Callable[[], float], log=print):
        self.budget_s, self.timing, self.clock, self.log = run.time_budget_s, timing, clock, log
        self.started = clock() - timing.elapsed if run.started_s is None else run.started_s  # as measure's
        self.origin = None  # (step, seconds since the start, predicted) at the first check

    def check(self, run: Run, step: int) -> Run | None:
        """After the evaluation at `step`, before its save: the shortened run, or None to go on as planned."""
        tc, t = run.train, self.timing
        pred = lambda n: predicted_s(n, t, tc.eval_interval, tc.ckpt_interval)
        rest = lambda n: pred(n) - pred(step) + t.save + t.final  # this step's save, later steps, the final pass
        now, done = self.clock() - self.started, pred(step) - t.save - t.final
        if self.origin is None:
            self.origin = (step, now, done)
            return None
        first, then, planned = self.origin
        rate = (now - then) / max(done - planned, 1e-9)
        if _agreed(int(now + rate * rest(tc.max_iters) > (1.0 - MARGIN / 2) * self.budget_s)) == 0:
            return None
        ends = range(step + tc.steps_per_call - step % tc.steps_per_call, tc.max_iters, tc.steps_per_call)
        if not ends:  # the next call is the last one already
            return None
        fits = lambda n: now + rate * (t.compile + rest(n)) <= (1.0 - MARGIN) * self.budget_s
        n = _agreed(ends[max(bisect.bisect_right(ends, False, key=lambda n: not fits(n)) - 1, 0)])  # whole calls
        self.origin = (first, then, planned - t.compile)  # the new compile is part of the plan from here
        self.log(f"time budget: steps {first}-{step} ran at {rate:.2f}x the planned time -> max_iters {n} (was "
                 f"{tc.max_iters}; predicted {now + rate * (t.compile + rest(n)):.0f} s)")
        return replace(run, train=replace(tc, max_iters=n, lr_decay_iters=n))


def _agreed(value: int) -> int:
    """Process 0's `value` on every process (each times its own machine; they must run the same program)."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils
    return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


def check_budget_flags(args) -> float:
    """--time-budget as seconds (0.0 without it); it fits a new run's max_iters, so --resume and --max-iters refuse."""
    if args.time_budget is None:
        return 0.0
    if args.resume:
        raise UsageError(f"--time-budget {args.time_budget}: --resume continues the checkpoint's max_iters and never "
                         f"re-times; extend that run with --max-iters")
    if args.max_iters is not None:
        raise UsageError(f"--time-budget {args.time_budget} chooses max_iters; drop --max-iters {args.max_iters}")
    return parse_duration(args.time_budget)


def with_budget(run: Run, time_budget_s: float, clock: Callable[[], float] | None = None) -> Run:
    """`run` carrying the budget and the command's start on `clock` (default: time.monotonic, less the time this
    process ran before, so interpreter start-up and imports count too)."""
    if not time_budget_s:
        return run
    started = clock() if clock is not None else time.monotonic() - process_age_s()
    return replace(run, time_budget_s=time_budget_s, started_s=started)
