"""The training loop: data in, an out-dir with config, tokenizer, metrics, checkpoints and a sample out.

Everything numeric happens in `training`; this file owns the side effects (files, checkpoints, signals, printing).
Metrics of a compiled call are read after the next call has been dispatched, so the host never stalls the device.
A run is a pure function of its config and step: batches and dropout fold the step into the saved key, so a run
restored from a checkpoint continues bit for bit (docs/checkpoints.md).
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from . import checkpoint as ckpt
from . import config as cfg
from . import flops, sharding
from .data import CharTokenizer, load_text, split
from .model import count_params, init_params
from .lora import count_trainable
from .sampling import generate
from .training import create_state, estimate_loss, evaluate_full, make_keys, train_steps

RUN_FILES = ("config.json", "metrics.jsonl", "checkpoints")


class RunError(ValueError):
    """An out-dir or run request that cannot be honoured without losing work."""


class Interrupted(Exception):
    """SIGINT/SIGTERM stopped the run after its checkpoint was written; exit status 128 + signal number."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


@dataclass
class Run:
    """What a run needs besides the configs: where its data and files are, and where it starts from."""
    model: cfg.GPTConfig
    train: cfg.TrainConfig
    out_dir: Path
    data: str = "tinyshakespeare"
    preset: str = ""
    resume: bool = False                      # continue the checkpoints in out_dir (configs are theirs)
    init_from: Path | None = None             # a new run from the params of this out-dir's latest checkpoint
    tokenizer: CharTokenizer | None = None    # the checkpoint's vocabulary when resuming or initialising from one


def check_out_dir(out_dir: Path) -> None:
    steps = ckpt.has_checkpoints(out_dir)
    if steps:
        raise RunError(f"out-dir {out_dir} already holds checkpoints (latest step {steps[-1]}); add --resume to "
                       f"continue that run, or choose another --out-dir (nothing was touched)")
    held = [name for name in RUN_FILES if (out_dir / name).exists()]
    if held:
        raise RunError(f"out-dir {out_dir} already holds a run ({', '.join(held)}) with no checkpoint to resume; "
                       f"choose another --out-dir (nothing was overwritten)")


def prepare(run: Run) -> tuple[Run, CharTokenizer, np.ndarray, np.ndarray]:
    """Load and tokenize the text, size the vocabulary, and split; raises DataError/ConfigError/RunError."""
    text = load_text(run.data)
    tokenizer = run.tokenizer or CharTokenizer.from_text(text)
    if run.resume and CharTokenizer.from_text(text).chars != tokenizer.chars:
        raise RunError(f"data {run.data!r} has a different vocabulary from the checkpoint's; resume it with the "
                       f"data it was trained on")
    try:
        tokens = tokenizer.encode(text)
    except ValueError as e:
        raise RunError(f"data {run.data!r} does not fit the checkpoint's vocabulary: {e}") from None
    model = replace(run.model, vocab_size=tokenizer.vocab_size).validate()
    train, val = split(tokens, model.block_size)
    return replace(run, model=model), tokenizer, train, val


def write_run_files(run: Run, tokenizer: CharTokenizer) -> None:
    run.out_dir.mkdir(parents=True, exist_ok=True)
    meta = {**cfg.to_dict(run.model, run.train), "preset": run.preset, "data": run.data}
    (run.out_dir / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    (run.out_dir / "tokenizer.json").write_text(tokenizer.to_json() + "\n")


def _chunks(step: int, tc: cfg.TrainConfig):
    """Sizes of the compiled calls up to the next evaluation, checkpoint or the end. The scan length does not
    change the numbers (tests/test_checkpoint.py); cutting at checkpoints puts every save between two calls."""
    after = lambda every: (step // every + 1) * every
    stop = min(after(tc.eval_interval), after(tc.ckpt_interval), tc.max_iters)
    while step < stop:
        n = min(tc.steps_per_call, stop - step)
        yield n
        step += n


def make_state(run: Run, log=print, mesh=None):
    """The one place a run's TrainState comes from: fresh, restored from out_dir (--resume; the newest complete
    step, into an abstract target), or fresh with params from another run (--init-from). Returns (state, meta of
    the restored step or None). Writes nothing except moving unreadable newer steps aside on resume."""
    mc, tc = run.model, run.train
    mesh = sharding.make_mesh(tc.sharding) if mesh is None else mesh
    if run.resume:  # restored straight into this run's shardings, whatever devices wrote the checkpoint
        target = ckpt.abstract_state(mc, tc)
        target = sharding.with_shardings(target, sharding.state_shardings(target, mesh))
        with ckpt.manager(run.out_dir, read_only=True) as mgr:
            state, meta, skipped = ckpt.restore_latest(mgr, target, log)
        ckpt.set_aside(run.out_dir, skipped, log)
        return state, meta
    params = None
    if run.init_from is not None:
        _, loaded, _, meta = ckpt.load_params(run.init_from, log=log)
        ckpt.merge_params(loaded, ckpt.abstract_params(mc), str(run.init_from))  # shapes first: no compile to refuse
        fresh = jax.jit(init_params, static_argnums=0)(mc, make_keys(tc.seed)["init"])  # eager: an op-by-op compile
        params = ckpt.merge_params(loaded, fresh, str(run.init_from))
        log(f"initialised from {run.init_from} step {meta['step']}")
    return sharding.init_sharded(partial(create_state, mc, tc), mesh, params)[0], None


def _keep_metrics(path: Path, step: int, write: bool = True) -> set[int]:
    """Drop records after `step` (the resumed run writes them again) and any line a kill cut short."""
    kept = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("step", step + 1) <= step:
            kept.append(rec)
    if write:  # process 0 only; the others need just the set of steps
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, path)
    return {r["step"] for r in kept}


class _Signals:
    """SIGINT/SIGTERM set `signum`, read by the loop between compiled calls; a second one interrupts at once."""

    def __enter__(self):
        self.signum, self._old = None, {}
        if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
            self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for s, handler in self._old.items():
            signal.signal(s, handler)


def train(run: Run, log=print) -> dict:
    """Train `run` (from scratch, resumed, or initialised from another run); returns the last metrics record.
    Raises Interrupted after saving if SIGINT/SIGTERM arrives."""
    if run.model.model == "ngram":  # trained by counting, no gradient steps
        from . import ngram
        return ngram.train(run, log)
    run, tokenizer, train_np, val_np = prepare(run)
    if not run.resume:
        check_out_dir(run.out_dir)
    mc, tc = run.model, run.train
    mesh = sharding.make_mesh(tc.sharding)  # all devices of all processes; 1 on a laptop
    sharding.check_batch(tc.batch_size, mesh, tc.gradient_accumulation_steps)
    main = sharding.is_main_process()  # process 0 alone prints and writes metrics; all of them save checkpoints
    log = log if main else (lambda *a, **k: None)
    data_sha = hashlib.sha256(train_np.tobytes() + val_np.tobytes()).hexdigest()[:16]
    meta = ckpt.run_meta(mc, tc, tokenizer, preset=run.preset, data=run.data, data_sha256=data_sha)

    t_start = time.perf_counter()
    state, restored = make_state(run, log, mesh)
    shardings = jax.tree.map(lambda x: x.sharding, state)
    step_fn = sharding.jit_step(train_steps, mesh, shardings, static_argnums=(2, 3, 4))
    step = int(state.step)
    if restored is not None and step >= tc.max_iters:
        raise RunError(f"the run in {run.out_dir} already reached step {step} (max_iters {tc.max_iters}); "
                       f"pass a larger --max-iters to train further")
    if restored is not None and restored.get("data_sha256") != data_sha:
        log(f"warning: data {run.data!r} differs from the data step {step} was trained on; "
            f"the resumed run will not match an uninterrupted one")
    with ckpt.manager(run.out_dir, tc.keep_checkpoints) as mgr, _Signals() as signals:
        if main:
            write_run_files(run, tokenizer)
        metrics_path = run.out_dir / "metrics.jsonl"
        logged = _keep_metrics(metrics_path, step, write=main) if restored is not None else set()
        log(cfg.to_json(mc, tc))
        n_params = count_params(state.params)
        trainable = count_trainable(state.params, mc)
        log(f"preset {run.preset or '(custom)'}: {n_params:,} parameters ({trainable:,} trainable), "
            f"vocab {mc.vocab_size}, {len(train_np):,} train / {len(val_np):,} val tokens; "
            f"{sharding.describe(mesh, shardings)}"
            + (f"; resumed at step {step}" if restored is not None else ""))
        splits = {"train": sharding.put_replicated(train_np, mesh), "val": sharding.put_replicated(val_np, mesh)}
        eval_key = make_keys(tc.seed)["eval"]
        tokens_per_step = tc.batch_size * mc.block_size
        flops_per_token, peak = flops.flops_per_token(mc, state.params), flops.device_peak_flops()
        log(flops.describe(flops_per_token, peak, mesh.size))

        record = {}
        t_window, steps_window = time.perf_counter(), 0
        bar = tqdm(total=tc.max_iters, initial=step, unit="step", dynamic_ncols=True, mininterval=0.5,
                   disable=not main)
        with (metrics_path.open("a") if main else open(os.devnull, "w")) as mfile:
            def evaluate():
                nonlocal t_window, steps_window, record
                with sharding.mesh_context(mesh):  # eval batches split over the devices too
                    losses = estimate_loss(state.params, splits, jax.random.fold_in(eval_key, step), mc, tc)
                now = time.perf_counter()
                record = {"step": step, "train_loss": round(float(losses["train"]), 5),
                          "val_loss": round(float(losses["val"]), 5),
                          "tokens_per_s": round(steps_window * tokens_per_step / max(now - t_window, 1e-9), 1),
                          "elapsed_s": round(now - t_start, 2)}
                utilisation = flops.mfu(record["tokens_per_s"], flops_per_token, mesh.size, peak)
                record["mfu"] = None if utilisation is None else round(utilisation, 4)  # null: peak unknown
                if step == tc.max_iters:
                    record["val_loss_full"] = round(evaluate_full(state.params, val_np, mc), 5)
                mfile.write(json.dumps(record) + "\n")
                mfile.flush()  # before the checkpoint of this step: a checkpoint never runs ahead of its metrics
                if main:  # tqdm.write prints even when the bar is disabled
                    bar.write(f"step {step}: train loss {record['train_loss']:.4f}, val loss {record['val_loss']:.4f}"
                              + (f", val loss (full pass) {record['val_loss_full']:.4f}"
                                 if "val_loss_full" in record else ""))
                t_window, steps_window = time.perf_counter(), 0
                return record["val_loss"]

            if restored is None:  # step 0: a checkpoint exists from the start, so any kill is resumable
                ckpt.save(mgr, state, meta, evaluate())
            elif step % tc.eval_interval == 0 and step not in logged:
                evaluate()
            pending = None
            while step < tc.max_iters and signals.signum is None:
                for n in _chunks(step, tc):
                    state, metrics = step_fn(state, splits["train"], mc, tc, n)
                    if pending is not None:  # the previous call's metrics: ready by now, no stall
                        _progress(bar, pending, steps_window, tokens_per_step, t_window)
                    pending, step, steps_window = (metrics, n), step + n, steps_window + n
                    if signals.signum is not None:
                        break
                _progress(bar, pending, steps_window, tokens_per_step, t_window)
                pending = None
                val_loss = evaluate() if step % tc.eval_interval == 0 or step == tc.max_iters else None
                if step % tc.ckpt_interval == 0 or step == tc.max_iters or signals.signum is not None:
                    ckpt.save(mgr, state, meta, val_loss)  # asynchronous: training goes on while it is written
            bar.close()
        mgr.wait_until_finished()

    if signals.signum is not None and step < tc.max_iters:
        name = signal.Signals(signals.signum).name
        raise Interrupted(signals.signum, f"{name} at step {step}: checkpoint saved in {run.out_dir / ckpt.CKPT_DIR}; "
                                          f"resume with: python train.py --out-dir {run.out_dir} --resume")
    from .viz import save_loss_png
    if main:
        save_loss_png(run.out_dir)  # loss.png when matplotlib (the optional viz extra) is installed
    if tc.sample_chars and signals.signum is None:
        newline = tokenizer.stoi.get("\n", 0)
        out = generate(state.params, mc, jnp.array([[newline]]), tc.sample_chars, make_keys(tc.seed)["sample"])
        log("-" * 40 + "\n" + tokenizer.decode(sharding.fetch(out)[0, 1:]) + "\n" + "-" * 40)
    return record


def _progress(bar, pending, steps_window, tokens_per_step, t_window):
    metrics, n = pending
    loss = float(metrics["loss"][-1])  # waits for that call to finish, so the rate below is true
    rate = steps_window * tokens_per_step / max(time.perf_counter() - t_window, 1e-9)
    bar.update(n)
    bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{rate:,.0f}", refresh=False)
