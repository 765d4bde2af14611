"""The training loop: data in, an out-dir with config, tokenizer, metrics, checkpoints and a sample out.

Everything numeric happens in `training`; this file owns the side effects (files, checkpoints, signals, printing).
Metrics of a compiled call are read after the next call has been dispatched, so the host never stalls the device
(`progress.py`); a non-finite step stops the run before anything after it is saved.
A run is a pure function of its config and step: batches and dropout fold the step into the saved key, so a run
restored from a checkpoint continues bit for bit (docs/checkpoints.md).
"""
from __future__ import annotations

import signal
import time
from dataclasses import replace
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp

from . import checkpoint as ckpt
from . import config as cfg
from . import budget, feeds, flops, ngram, runimport, sharding
from .data import CharTokenizer, HFTokenizer
from .errors import NumericalError
from .lora import count_trainable
from .model import init_params
from .presets import differences
from .params import count_params, merge_params, mismatch_error, mismatches
from .progress import OnEvent, Progress, Signals
from .rundir import MetricsLog, Run, check_out_dir, prepare, with_bpc, write_config, write_run_files
from .sampling import generate
from .training import create_state, eval_params, make_keys, train_steps_jit
from .viz import save_loss_png

class Interrupted(Exception):
    """SIGINT/SIGTERM stopped the run after its checkpoint was written; exit status 128 + signal number."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


def chunk_sizes(step: int, tc: cfg.TrainConfig):
    """Sizes of the compiled calls from `step` to max_iters, cut at every evaluation and checkpoint. The scan
    length does not change the numbers (tests/test_checkpoint.py); cutting at checkpoints puts every save between
    two calls."""
    after = lambda every: (step // every + 1) * every
    while step < tc.max_iters:
        n = min(tc.steps_per_call, min(after(tc.eval_interval), after(tc.ckpt_interval), tc.max_iters) - step)
        yield n
        step += n


def make_state(run: Run, log=print, mesh=None):
    """The one place a run's TrainState comes from: fresh, restored from out_dir (--resume; the newest complete
    step, into an abstract target), or fresh with params from another run (--init-from). Returns (state, meta of
    the restored step or None). Writes nothing except moving unreadable newer steps aside on resume."""
    mc, tc = run.model, run.train
    mesh = sharding.make_mesh(tc.sharding) if mesh is None else mesh
    if run.resume and ckpt.has_checkpoints(run.out_dir):  # into this run's shardings, whatever devices wrote it
        state, meta = _restore(run, mesh, log)
        return state, meta
    params = None
    if run.init_from is not None:
        _, loaded, _, meta = runimport.source_params(run.init_from, log=log)  # a run, ckpt.pt or HF dir
        problems = mismatches(ckpt.abstract_params(mc), loaded, lambda key: "lora_" in key)
        if problems:  # before compiling the fresh init, which only the adapters need
            raise mismatch_error(f"the checkpoint in {run.init_from}", problems)
        params = merge_params(loaded, init_params(mc, make_keys(tc.seed)["init"]), str(run.init_from))
        log(f"initialised from {run.init_from} step {meta['step']}")
    return sharding.init_sharded(partial(create_state, mc, tc), mesh, params)[0], None


def _restore(run: Run, mesh, log):
    """The newest complete step of run.out_dir. When --resume switched gradient clipping on or off, the optimizer
    state is read in the checkpoint's layout and re-laid: clipping holds no state, so the leaves are the same."""
    mc, tc = run.model, run.train
    saved = replace(tc, grad_clip=run.saved_grad_clip) if run.saved_grad_clip is not None else tc
    target = ckpt.abstract_state(mc, saved)
    target = sharding.with_shardings(target, sharding.state_shardings(target, mesh))
    with ckpt.manager(run.out_dir, read_only=True) as mgr:
        state, meta, skipped = ckpt.restore_latest(mgr, target, log)
    ckpt.set_aside(run.out_dir, skipped, log)
    if saved is not tc:
        layout = jax.tree.structure(ckpt.abstract_state(mc, tc).opt_state)
        state = state.replace(opt_state=jax.tree.unflatten(layout, jax.tree.leaves(state.opt_state)))
    return state, meta


def train(run: Run, log=print, on_event: OnEvent | None = None, clock: Callable[[], float] | None = None) -> dict:
    """Train `run` (from scratch, resumed, or initialised from another run); returns the last metrics record.
    `on_event(name, **details)` is told of progress (see `Progress`) and of the phases in PHASES. Raises
    Interrupted after saving if SIGINT/SIGTERM arrives, NumericalError (nothing saved) on a non-finite step.
    With run.time_budget_s, max_iters is fitted on `clock` first (budget.py)."""
    if isinstance(run.model, cfg.NGramConfig):  # trained by counting, no gradient steps
        return train_ngram(run, log)
    run, tokenizer, train_np, val_np = prepare(run)
    if not run.resume:
        check_out_dir(run.out_dir)
    mc, tc = run.model, run.train
    mesh = sharding.make_mesh(tc.sharding)  # all devices of all processes; 1 on a laptop
    sharding.check_batch(tc.batch_size, mesh, tc.gradient_accumulation_steps)
    main = sharding.is_main_process()  # process 0 alone prints and writes metrics; all of them save checkpoints
    log = log if main else (lambda *a, **k: None)
    data_sha = feeds.data_identity(run, train_np, val_np)
    on_event = on_event or (lambda *a, **k: None)
    t_start = time.perf_counter()
    state, restored = make_state(run, log, mesh)
    feed = feeds.make_feed(run, mesh, train_np, val_np, int(state.step))
    run, pace = budget.fit_to_budget(run, state, mesh, train_np, val_np, log, clock or time.monotonic)  # before writes
    mc, tc = run.model, run.train
    meta = ckpt.run_meta(mc, tc, tokenizer, preset=run.preset, data=run.data, data_sha256=data_sha)
    step = int(state.step)
    if _check_restored(run, restored, step, data_sha, log):
        return {}
    if restored is not None:
        feed.restore(run.out_dir, step)  # the loader continues its stream where the step left it
    with ckpt.manager(run.out_dir, tc.keep_checkpoints) as mgr, Signals() as signals:
        if main:
            write_run_files(run, tokenizer)
        metrics_log = MetricsLog(run.out_dir / "metrics.jsonl", -1 if restored is None else step, main)
        progress = _announce(run, state, mesh, feed, restored, log, on_event, t_start - metrics_log.elapsed_s)
        progress.steps_log = MetricsLog(run.out_dir / STEPS_LOG, -1 if restored is None else step, main)
        evaluations = Evaluations(run, feed, metrics_log, progress)
        try:
            run, state, step, record = _steps(run, state, restored, meta, mgr, evaluations, progress, signals,
                                              on_event, pace)
        except NumericalError as e:
            raise NumericalError(f"{e}; {_diverged_hint(run, mgr)}") from None
        finally:
            progress.close()
            metrics_log.close()
            mgr.wait_until_finished()
    on_event("done", step=step)
    _finish(run, state, tokenizer, step, signals.signum, main, log)
    return record


STEPS_LOG = "steps.jsonl"  # every step's training loss, {"step", "loss"}: a curve however few the evaluations
PHASES = ("before-first-checkpoint", "saving", "final-full-pass", "done")  # the events a kill test pauses at


def _steps(run, state, restored, meta, mgr, evaluations, progress, signals, on_event: OnEvent, pace=None):
    """The gradient steps from state.step to max_iters (or a signal): (run, state, step, last record). With a
    budget's `pace`, max_iters may shrink at an evaluation: the run returned is the one that was trained."""
    tc, step, record = run.train, int(state.step), {}
    if restored is None:  # step 0: a checkpoint exists from the start, so any kill is resumable
        on_event("before-first-checkpoint", step=0)
        record = evaluations(eval_params(state), 0)
        _save(mgr, state, meta, record["val_loss"], on_event, evaluations.feed)
    elif step % tc.eval_interval == 0 and step not in evaluations.metrics_log.steps:
        record = evaluations(eval_params(state), step)
    while step < tc.max_iters:  # a budget's pace may shorten tc at an evaluation: each call from the current one
        n = next(chunk_sizes(step, tc))
        state, metrics = train_steps_jit(state, evaluations.feed.train(step, n), run.model, tc, n)
        progress.after_call(metrics, n)
        step += n
        evaluating = step % tc.eval_interval == 0 or step == tc.max_iters
        if evaluating or step % tc.ckpt_interval == 0 or signals.signum is not None:
            progress.drain()  # raises NumericalError before a non-finite state is saved
            if step == tc.max_iters:
                on_event("final-full-pass", step=step)
            record = evaluations(eval_params(state), step) if evaluating else record
            shorter = pace.check(run, step) if pace and evaluating and step < tc.max_iters else None
            if shorter:  # before the save, so a checkpoint's meta always holds the schedule its later steps follow
                run, tc, meta = shorter, shorter.train, {**meta, "config": cfg.to_dict(shorter.model, shorter.train)}
                evaluations.run, progress.bar.total = run, tc.max_iters
                if progress.main:
                    write_config(run)
            _save(mgr, state, meta, record["val_loss"] if evaluating else None, on_event, evaluations.feed)
        if signals.signum is not None:
            break
    return run, state, step, record


def _save(mgr, state, meta: dict, val_loss: float | None, on_event: OnEvent, feed) -> None:
    # the loader's state (shard path) in the same step; asynchronous: the event comes while it may still be written
    ckpt.save(mgr, state, meta, val_loss, feed.state())
    on_event("saving", step=int(state.step))


def _diverged_hint(run: Run, mgr) -> str:
    mgr.wait_until_finished()
    kept = max(mgr.all_steps(), default=None)
    return (f"nothing was saved after it (last good checkpoint: step {kept} in {run.out_dir / ckpt.CKPT_DIR}); "
            f"resume with a smaller learning rate or gradient clipping, e.g. python train.py --out-dir "
            f"{run.out_dir} --resume --set learning_rate={run.train.learning_rate / 10:g} grad_clip=1.0 "
            f"(--resume may change learning_rate, grad_clip and warmup_iters)")


class Evaluations:
    """A run's evaluations: each record is `evaluate`'s plus the throughput since the last one; it goes into the
    metrics log and is printed. Holds the run's feed (feeds.py: the batches of the steps and the evaluations)."""

    def __init__(self, run: Run, feed, metrics_log: MetricsLog, progress: Progress):
        self.run, self.feed, self.metrics_log, self.progress = run, feed, metrics_log, progress
        self.key = make_keys(run.train.seed)["eval"]

    def __call__(self, params, step: int) -> dict:
        record = {**feeds.evaluate(params, self.feed, self.key, step, self.run.train, self.run.val_chars),
                  **self.progress.timing()}
        self.metrics_log.write(record)
        if self.progress.main:  # the record for other sinks (jaxgpt.loggers: --log tensorboard / wandb)
            self.progress.on_event("eval", record=record)
        full = f", val loss (full pass) {record['val_loss_full']:.4f}" if "val_loss_full" in record else ""
        bpc = record.get("val_bpc_full", record.get("val_bpc"))
        full += f" ({bpc:.4f} bits/char)" if bpc is not None else ""
        self.progress.write(f"step {step}: train loss {record['train_loss']:.4f}, "
                            f"val loss {record['val_loss']:.4f}{full}")
        return record


def _check_restored(run: Run, restored: dict | None, step: int, data_sha: str, log) -> bool:
    """True when the restored run is already finished (said in one line: a job that always resumes succeeds)."""
    if restored is None:
        return False
    if step >= run.train.max_iters:
        log(f"the run in {run.out_dir} already reached step {step} (max_iters {run.train.max_iters}); nothing to "
            f"do (pass a larger --max-iters to train further)")
        return True
    if restored.get("data_sha256") != data_sha:
        log(f"warning: data {run.data!r} differs from the data step {step} was trained on; "
            f"the resumed run will not match an uninterrupted one")
    return False


def _announce(run: Run, state, mesh, feed, restored, log, on_event: OnEvent | None, t_start: float) -> Progress:
    """Print the effective config and what is being trained on what; returns the run's Progress."""
    mc, tc = run.model, run.train
    shardings = jax.tree.map(lambda x: x.sharding, state)
    changed = differences(run.preset, mc, tc)  # not the whole config: config.json holds it
    log(f"config: preset {run.preset or '(none)'}{' with ' + ', '.join(changed) if changed else ''}; all of it in "
        f"{run.out_dir / 'config.json'}")
    log(f"preset {run.preset or '(custom)'}: {count_params(state.params):,} parameters "
        f"({count_trainable(state.params, mc):,} trainable), vocab {mc.vocab_size}, {feed.tokens[0]:,} train / "
        f"{feed.tokens[1]:,} val tokens; {sharding.describe(mesh, shardings)}"
        + (f"; resumed at step {int(state.step)}" if restored is not None else ""))
    log(feed.describe())  # which way the batches come in, once (config.json's data_path records it)
    flops_per_token, peak = flops.flops_per_token(mc, state.params), flops.device_peak_flops()
    log(flops.describe(flops_per_token, peak, mesh.size))
    return Progress(mc, tc, int(state.step), sharding.is_main_process(), on_event or (lambda *a, **k: None),
                    flops_per_token, peak, mesh.size, t_start)


def _finish(run: Run, state, tokenizer: CharTokenizer | HFTokenizer, step: int, signum: int | None, main: bool,
            log) -> None:
    """After the last checkpoint: the signal's exit, or loss.png and the closing sample."""
    mc, tc = run.model, run.train
    if signum is not None and step < tc.max_iters:
        name = signal.Signals(signum).name
        raise Interrupted(signum, f"{name} at step {step}: checkpoint saved in {run.out_dir / ckpt.CKPT_DIR}; "
                                  f"resume with: python train.py --out-dir {run.out_dir} --resume")
    if main:
        save_loss_png(run.out_dir)  # loss.png when matplotlib (the optional viz extra) is installed
    if tc.sample_chars and signum is None:
        newline = tokenizer.start_id()
        out = generate(eval_params(state), mc, jnp.array([[newline]]), tc.sample_chars, make_keys(tc.seed)["sample"])
        log("-" * 40 + "\n" + tokenizer.decode(sharding.fetch(out)[0, 1:]) + "\n" + "-" * 40)
    log(done_message(run.out_dir, f"step {step}"))


def done_message(out_dir, what: str) -> str:
    """The last line of a finished run: where its files are and how to sample from it."""
    return (f"done ({what}): config.json, tokenizer.json, metrics.jsonl and the model are in {out_dir}; "
            f"sample with: python sample.py --out-dir {out_dir}")


def train_ngram(run: Run, log=print) -> dict:
    """`train.py --preset ngram`: count, write config/tokenizer/ngram.npz/metrics.jsonl, print a sample."""
    run, tokenizer, train_np, val_np = prepare(run)
    check_out_dir(run.out_dir)
    mc: cfg.NGramConfig = run.model
    ngram.NGramModel.check_order(mc.n, mc.vocab_size)
    t_start = time.perf_counter()
    model = ngram.NGramModel.fit(train_np, mc.vocab_size, mc.n, mc.smoothing, mc.alpha)
    count_s = time.perf_counter() - t_start
    write_run_files(run, tokenizer)
    model.save(run.out_dir / ngram.FILE)
    n_entries = sum(len(keys) for keys, _ in model.tables)
    log(f"{mc.n}-gram ({mc.smoothing}{f', alpha {mc.alpha}' if mc.smoothing == 'add_alpha' else ''}): "
        f"{n_entries:,} stored counts from {len(train_np):,} train tokens in {count_s:.2f} s")
    val = round(model.cross_entropy(val_np), 5)
    record = {"step": 0, "train_loss": round(model.cross_entropy(train_np), 5), "val_loss": val,
              "tokens_per_s": round(len(train_np) / max(count_s, 1e-9), 1),
              "elapsed_s": round(time.perf_counter() - t_start, 2), "val_loss_full": val}
    record = with_bpc(record, len(val_np), run.val_chars)
    metrics_log = MetricsLog(run.out_dir / "metrics.jsonl", None, True)
    metrics_log.write(record)
    metrics_log.close()
    bpc = f" ({record['val_bpc_full']:.4f} bits/char)" if "val_bpc_full" in record else ""
    log(f"train loss {record['train_loss']:.4f}, val loss (full pass) {val:.4f}{bpc}")
    if run.train.sample_chars:
        rng = ngram.rng_from_key(make_keys(run.train.seed)["sample"])
        out = model.generate([tokenizer.start_id()], run.train.sample_chars, rng)
        log("-" * 40 + "\n" + tokenizer.decode(out[1:]) + "\n" + "-" * 40)
    log(done_message(run.out_dir, f"{mc.n}-gram counted"))
    return record
