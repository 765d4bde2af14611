"""Where a run's metrics go besides `metrics.jsonl`: `train.py --log tensorboard` and/or `--log wandb`.

A command-line choice, not part of the saved config: a run can be resumed with another logger (or none). Each is
an optional extra (`pip install 'jaxgpt[tensorboard]'`, `'jaxgpt[wandb]'`), checked when the flags are parsed and
opened at the first evaluation, so a refused run leaves nothing behind. Records are `metrics.jsonl`'s: every number
but the step becomes a scalar of that name at that step. Weights & Biases honours WANDB_MODE / WANDB_DIR.
"""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from .errors import UsageError

CHOICES = {"tensorboard": "tensorboard", "wandb": "wandb"}  # --log NAME -> the module it needs
TB_DIR = "tensorboard"  # under the out-dir: `tensorboard --logdir <out-dir>/tensorboard`


def add_flag(parser) -> None:
    parser.add_argument("--log", action="append", default=[], choices=sorted(CHOICES),
                        help="also send metrics to TensorBoard (<out-dir>/tensorboard) or Weights & Biases; "
                             "may repeat; not saved in the run's config")


def check(names: list[str]) -> None:
    """UsageError naming the extra to install when a chosen logger's package is missing."""
    for name in names:
        if importlib.util.find_spec(CHOICES[name]) is None:
            raise UsageError(f"--log {name} needs the {CHOICES[name]} package: pip install 'jaxgpt[{name}]'")


class TensorBoard:
    """Scalar events written with tensorboard's own event writer (no TensorFlow or torch needed)."""

    def __init__(self, out_dir: Path, run):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
        self.writer = EventFileWriter(str(Path(out_dir) / TB_DIR))

    def write(self, record: dict) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in record.items()
                  if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)]
        self.writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(record["step"]),
                                              summary=summary_pb2.Summary(value=values)))
        self.writer.flush()  # each record on disk at once, like metrics.jsonl


class WandB:
    """One wandb run per training run, named after the out-dir, with the effective config."""

    def __init__(self, out_dir: Path, run):
        import wandb
        from .config import to_dict
        self.run = wandb.init(project="jaxgpt", name=Path(out_dir).name, config=to_dict(run.model, run.train))

    def write(self, record: dict) -> None:
        self.run.log({k: v for k, v in record.items() if k != "step"}, step=int(record["step"]))  # finished at exit


def chain(names: list[str], run, on_event=None):
    """`on_event` for loop.train that also sends each "eval" record to the chosen loggers (opened on first use)."""
    check(names)  # before the loop writes anything
    if not names:
        return on_event
    opened = []

    def handle(name, **details):
        if name == "eval":
            if not opened:
                opened.extend({"tensorboard": TensorBoard, "wandb": WandB}[n](run.out_dir, run)
                              for n in dict.fromkeys(names))
            for logger in opened:
                logger.write(details["record"])
        if on_event is not None:
            on_event(name, **details)
    return handle
