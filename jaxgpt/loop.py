"""The training loop: data in, an out-dir with config, tokenizer, metrics and a sample out.

Everything numeric happens in `training`; this file owns the side effects (files, progress bar, printing).
Metrics of a compiled call are read after the next call has been dispatched, so the host never stalls the device.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from . import config as cfg
from .data import CharTokenizer, load_text, split
from .model import count_params
from .sampling import generate
from .training import create_state, estimate_loss, evaluate_full, make_keys, train_steps_jit

RUN_FILES = ("config.json", "metrics.jsonl", "checkpoints")


class RunError(ValueError):
    """An out-dir or run request that cannot be honoured without losing work."""


@dataclass
class Run:
    """What a run needs besides the configs: where its data and files are."""
    model: cfg.GPTConfig
    train: cfg.TrainConfig
    out_dir: Path
    data: str = "tinyshakespeare"
    preset: str = ""


def check_out_dir(out_dir: Path) -> None:
    held = [name for name in RUN_FILES if (out_dir / name).exists()]
    if held:
        raise RunError(f"out-dir {out_dir} already holds a run ({', '.join(held)}); "
                       f"choose another --out-dir (nothing was overwritten)")


def prepare(run: Run) -> tuple[Run, CharTokenizer, np.ndarray, np.ndarray]:
    """Load and tokenize the text, size the vocabulary, and split; raises DataError/ConfigError on bad input."""
    text = load_text(run.data)
    tokenizer = CharTokenizer.from_text(text)
    model = replace(run.model, vocab_size=tokenizer.vocab_size).validate()
    train, val = split(tokenizer.encode(text), model.block_size)
    return replace(run, model=model), tokenizer, train, val


def write_run_files(run: Run, tokenizer: CharTokenizer) -> None:
    run.out_dir.mkdir(parents=True, exist_ok=True)
    meta = {**cfg.to_dict(run.model, run.train), "preset": run.preset, "data": run.data}
    (run.out_dir / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    (run.out_dir / "tokenizer.json").write_text(tokenizer.to_json() + "\n")


def _chunks(step: int, tc: cfg.TrainConfig):
    """Sizes of the compiled calls up to the next evaluation (or the end)."""
    stop = min((step // tc.eval_interval + 1) * tc.eval_interval, tc.max_iters)
    while step < stop:
        n = min(tc.steps_per_call, stop - step)
        yield n
        step += n


def train(run: Run, log=print) -> dict:
    """Train `run` from scratch; returns the last metrics record (with val_loss_full)."""
    run, tokenizer, train_np, val_np = prepare(run)
    check_out_dir(run.out_dir)
    mc, tc = run.model, run.train
    write_run_files(run, tokenizer)
    log(cfg.to_json(mc, tc))

    t_start = time.perf_counter()
    state = jax.jit(create_state, static_argnums=(0, 1))(mc, tc)
    log(f"preset {run.preset or '(custom)'}: {count_params(state.params):,} parameters, "
        f"vocab {mc.vocab_size}, {len(train_np):,} train / {len(val_np):,} val tokens, devices {jax.devices()}")
    splits = {"train": jnp.asarray(train_np), "val": jnp.asarray(val_np)}
    eval_key = make_keys(tc.seed)["eval"]
    tokens_per_step = tc.batch_size * mc.block_size

    metrics_path = run.out_dir / "metrics.jsonl"
    record = {}
    step, t_window, steps_window = 0, time.perf_counter(), 0
    bar = tqdm(total=tc.max_iters, unit="step", dynamic_ncols=True, mininterval=0.5)
    with metrics_path.open("a") as mfile:
        def evaluate():
            nonlocal t_window, steps_window, record
            losses = estimate_loss(state.params, splits, jax.random.fold_in(eval_key, step), mc, tc)
            now = time.perf_counter()
            record = {"step": step, "train_loss": round(float(losses["train"]), 5),
                      "val_loss": round(float(losses["val"]), 5),
                      "tokens_per_s": round(steps_window * tokens_per_step / max(now - t_window, 1e-9), 1),
                      "elapsed_s": round(now - t_start, 2)}
            if step == tc.max_iters:
                record["val_loss_full"] = round(evaluate_full(state.params, val_np, mc), 5)
            mfile.write(json.dumps(record) + "\n")
            mfile.flush()
            bar.write(f"step {step}: train loss {record['train_loss']:.4f}, val loss {record['val_loss']:.4f}"
                      + (f", val loss (full pass) {record['val_loss_full']:.4f}" if "val_loss_full" in record else ""))
            t_window, steps_window = time.perf_counter(), 0

        evaluate()
        pending = None
        while step < tc.max_iters:
            for n in _chunks(step, tc):
                state, metrics = train_steps_jit(state, splits["train"], mc, tc, n)
                if pending is not None:  # the previous call's metrics: ready by now, no stall
                    _progress(bar, pending, steps_window, tokens_per_step, t_window)
                pending, step, steps_window = (metrics, n), step + n, steps_window + n
            _progress(bar, pending, steps_window, tokens_per_step, t_window)
            pending = None
            evaluate()
        bar.close()

    if tc.sample_chars:
        newline = tokenizer.stoi.get("\n", 0)
        out = generate(state.params, mc, jnp.array([[newline]]), tc.sample_chars, make_keys(tc.seed)["sample"])
        log("-" * 40 + "\n" + tokenizer.decode(out[0, 1:]) + "\n" + "-" * 40)
    return record


def _progress(bar, pending, steps_window, tokens_per_step, t_window):
    metrics, n = pending
    loss = float(metrics["loss"][-1])  # waits for that call to finish, so the rate below is true
    rate = steps_window * tokens_per_step / max(time.perf_counter() - t_window, 1e-9)
    bar.update(n)
    bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{rate:,.0f}", refresh=False)
