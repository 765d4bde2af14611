"""A run's description and its out-dir: the data prepared for it, the files that say what it is, and the metrics
log. `loop` trains a `Run`; `cli` builds one from the command line.

An out-dir holds `config.json` (the effective config, preset and data source), `tokenizer.json`, `metrics.jsonl`
(one JSON record per evaluation) and `checkpoints/` (or `ngram.npz` for a count model), plus `loss.png`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from . import config as cfg
from . import ngram
from .data import CharTokenizer, load_text, train_val_split
from .errors import RunError

RUN_FILES = ("config.json", "metrics.jsonl", "checkpoints", ngram.FILE)


@dataclass(frozen=True)
class Run:
    """What a run needs besides the configs: where its data and files are, and where it starts from."""
    model: cfg.GPTConfig | cfg.NGramConfig
    train: cfg.TrainConfig
    out_dir: Path
    data: str = "tinyshakespeare"
    preset: str = ""
    resume: bool = False                      # continue the checkpoints in out_dir (configs are theirs)
    init_from: Path | None = None             # a new run from the params of this out-dir's latest checkpoint
    tokenizer: CharTokenizer | None = None    # the checkpoint's vocabulary when resuming or initialising from one
    time_budget_s: float = 0.0                # > 0: budget.fit_to_budget chooses max_iters (a new run only)
    started_s: float | None = None            # the command's start on the loop's clock (None: the loop's start)


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
    model = replace(run.model, vocab_size=tokenizer.vocab_size)
    train, val = train_val_split(tokens, model.block_size)
    return replace(run, model=model), tokenizer, train, val


def write_run_files(run: Run, tokenizer: CharTokenizer) -> None:
    run.out_dir.mkdir(parents=True, exist_ok=True)
    meta = {**cfg.to_dict(run.model, run.train), "preset": run.preset, "data": run.data}
    (run.out_dir / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    (run.out_dir / "tokenizer.json").write_text(tokenizer.to_json() + "\n")


class MetricsLog:
    """`metrics.jsonl`: on resume, records after the restored step (and any line a kill cut short) are dropped
    first; each record is written and flushed at once, so a checkpoint never runs ahead of its metrics. Only
    the main process writes; every process knows which steps are logged."""

    def __init__(self, path: Path, resumed_at: int | None, write: bool):
        self.path, self.write_enabled, self.steps = path, write, set()
        if resumed_at is not None:
            kept = [r for r in self._records() if r.get("step", resumed_at + 1) <= resumed_at]
            self.steps = {r["step"] for r in kept}
            if write:
                tmp = path.with_suffix(".tmp")
                tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
                os.replace(tmp, path)
        self._file = path.open("a") if write else None

    def _records(self) -> list[dict]:
        records = []
        for line in self.path.read_text().splitlines() if self.path.exists() else []:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def write(self, record: dict) -> None:
        self.steps.add(record["step"])
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
