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
from .data import (CharTokenizer, HFTokenizer, bits_per_char, check_splits, load_text, load_tokenizer, split_text,
                   train_val_split)
from .data.prepare import make_tokenizer
from .data.tokenfolder import TokenFolder, is_token_folder, open_token_folder
from .errors import RunError

# what a run has to lose besides complete checkpoints; config.json and tokenizer.json are written again
RUN_FILES = ("metrics.jsonl", ngram.FILE)


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
    tokenizer: CharTokenizer | HFTokenizer | None = None  # the checkpoint's when resuming or initialising from one
    tokenizer_file: str | None = None         # train.py --tokenizer PATH: a Hugging Face tokenizer.json (kind file)
    val_chars: int = 0                        # characters of the validation text (bits per character); set by prepare
    time_budget_s: float = 0.0                # > 0: budget.fit_to_budget chooses max_iters (a new run only)
    started_s: float | None = None            # the command's start on the loop's clock (None: the loop's start)
    saved_grad_clip: float | None = None      # the checkpoint's grad_clip when --resume changed it (optimizer layout)
    tokens: TokenFolder | None = None         # --data DIR of token files, checked by prepare: the shard path


def check_out_dir(out_dir: Path) -> None:
    """An out-dir a new run may write to: none yet, or one with nothing to lose (no checkpoint, no metric record:
    a run killed before its first checkpoint). Raises RunError naming what is there."""
    if out_dir.exists() and not out_dir.is_dir():
        raise RunError(f"--out-dir {out_dir} is a file, not a folder; choose another --out-dir (nothing was touched)")
    steps = ckpt.has_checkpoints(out_dir)
    if steps:
        raise RunError(f"out-dir {out_dir} already holds checkpoints (latest step {steps[-1]}); add --resume to "
                       f"continue that run, or choose another --out-dir (nothing was touched)")
    held = [name for name in RUN_FILES if (out_dir / name).exists()]
    if held == ["metrics.jsonl"] and not MetricsLog.read(out_dir / "metrics.jsonl"):
        return  # an empty log and no complete checkpoint: a kill before the first record, nothing to lose
    if held:
        raise RunError(f"out-dir {out_dir} already holds a run ({', '.join(held)}) with no checkpoint to resume; "
                       f"choose another --out-dir (nothing was overwritten)")


def prepare(run: Run) -> tuple[Run, CharTokenizer | HFTokenizer, np.ndarray, np.ndarray]:
    """Load and tokenize the text, size the vocabulary, and split; raises DataError/ConfigError/RunError.
    Characters: the lecture's vocabulary of the whole text, its ids split 90/10. Subwords: the text split 90/10 by
    characters, the tokenizer (trained on the train split, or given) encoding each part on its own. A folder of
    token files is checked and memory-mapped instead (the splits returned are read-only memmaps)."""
    if is_token_folder(run.data):
        return _prepare_tokens(run)
    text = load_text(run.data)
    if run.train.tokenizer == "char" and (run.tokenizer is None or run.tokenizer.kind == "char"):
        train, val, tokenizer = _char_splits(run, text)
        val_chars = len(val)
    else:
        train_text, val_text = split_text(text)
        tokenizer = run.tokenizer or make_tokenizer(run.train.tokenizer, text, train_text, run.train.bpe_vocab_size,
                                                    run.tokenizer_file)
        train, val = check_splits(tokenizer.encode(train_text), tokenizer.encode(val_text), run.model.block_size)
        val_chars = len(val_text)
    model = replace(run.model, vocab_size=tokenizer.vocab_size)
    return replace(run, model=model, val_chars=val_chars), tokenizer, train, val


def _char_splits(run: Run, text: str):
    tokenizer = run.tokenizer or CharTokenizer.from_text(text)
    if run.resume and CharTokenizer.from_text(text).chars != tokenizer.chars:
        raise RunError(f"data {run.data!r} has a different vocabulary from the checkpoint's; resume it with the "
                       f"data it was trained on")
    try:
        tokens = tokenizer.encode(text)
    except ValueError as e:
        raise RunError(f"data {run.data!r} does not fit the checkpoint's vocabulary: {e}") from None
    return *train_val_split(tokens, run.model.block_size), tokenizer


def _prepare_tokens(run: Run) -> tuple[Run, CharTokenizer | HFTokenizer, np.ndarray, np.ndarray]:
    """A token folder: its tokenizer.json (or nanoGPT's meta.pkl) decides the tokens, as a run folder's does."""
    if run.tokenizer_file is not None:
        raise RunError(f"--tokenizer {run.tokenizer_file} does not apply to --data {run.data}: a folder of token "
                       f"files was written with its own tokenizer (its meta.json / meta.pkl); drop --tokenizer")
    folder = open_token_folder(run.data, run.model.block_size)
    tokenizer = folder.tokenizer
    if run.tokenizer is not None and run.tokenizer.sha256 != tokenizer.sha256:
        raise RunError(f"data {run.data!r} has a different tokenizer from the checkpoint's in "
                       f"{run.init_from or run.out_dir}; use the data it was trained on")
    run = replace(run, model=replace(run.model, vocab_size=folder.vocab_size), tokens=folder,
                  train=replace(run.train, tokenizer=tokenizer.kind), val_chars=folder.val_chars)
    return run, tokenizer, folder.split("train"), folder.split("val")


def write_run_files(run: Run, tokenizer: CharTokenizer | HFTokenizer) -> None:
    """config.json and tokenizer.json (jaxgpt's {"chars": [...]}, or Hugging Face's format for bpe and file)."""
    run.out_dir.mkdir(parents=True, exist_ok=True)
    write_config(run)
    tokenizer.save(run.out_dir / "tokenizer.json")


def write_config(run: Run) -> None:
    """config.json: the configs, preset, data and which way the batches came in (again when a budget shortens
    max_iters)."""
    meta = {**cfg.to_dict(run.model, run.train), "preset": run.preset, "data": run.data,
            "data_path": "memory" if run.tokens is None else "shards"}
    (run.out_dir / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def read_run_files(out_dir: Path) -> dict:
    """What `write_run_files` wrote, in the form of a checkpoint's meta (config, preset, data, tokenizer): how
    --resume starts a run killed before its first checkpoint, and how an n-gram run is read. RunError if damaged."""
    try:
        written = json.loads((out_dir / "config.json").read_text())
        kind = cfg.from_dict({"model": written["model"], "train": written["train"]})[1].tokenizer
        tokenizer = load_tokenizer(out_dir / "tokenizer.json", None if kind == "char" else kind)
        meta = {"config": {"model": written["model"], "train": written["train"]}, "preset": written["preset"],
                "data": written["data"], "tokenizer": tokenizer.to_meta()}
        return meta
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise RunError(f"the run files config.json / tokenizer.json in {out_dir} cannot be read "
                       f"({type(e).__name__}: {e}); they are damaged or not written by train.py") from None


def with_bpc(record: dict, val_tokens: int, val_chars: int) -> dict:
    """`record` plus its validation losses in bits per character, when the character count is known."""
    for name in ("val_loss", "val_loss_full") if val_chars else ():
        if name in record:
            record[name.replace("loss", "bpc")] = round(bits_per_char(record[name], val_tokens, val_chars), 5)
    return record


class MetricsLog:
    """`metrics.jsonl`: on resume, records after the restored step (and any line a kill cut short) are dropped
    first; each record is written and flushed at once, so a checkpoint never runs ahead of its metrics. Only
    the main process writes; every process knows which steps are logged."""

    def __init__(self, path: Path, resumed_at: int | None, write: bool):
        self.path, self.write_enabled, self.steps, kept = path, write, set(), []
        if resumed_at is not None:  # -1: a resume with no checkpoint yet keeps no record
            kept = [r for r in self.read(path) if r.get("step", resumed_at + 1) <= resumed_at]
            self.steps = {r["step"] for r in kept}
            if write:
                tmp = path.with_suffix(".tmp")
                tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
                os.replace(tmp, path)
        self.elapsed_s = kept[-1].get("elapsed_s", 0.0) if kept else 0.0  # elapsed_s continues across --resume
        self._file = path.open("a" if resumed_at is not None else "w") if write else None

    @staticmethod
    def read(path: Path) -> list[dict]:
        """The records of a metrics.jsonl; a line a kill cut short is left out."""
        records = []
        for line in path.read_text().splitlines() if path.exists() else []:
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
