"""--log tensorboard: the records of metrics.jsonl read back from TensorBoard's event files; not in the config."""
import json

import pytest

from jaxgpt import loggers
from jaxgpt.cli import parse_train_args, train_main
from jaxgpt.errors import UsageError


def test_log_flag_is_not_part_of_the_config():
    args = parse_train_args(["--preset", "bigram", "--log", "tensorboard", "--log", "wandb"])
    assert args.log == ["tensorboard", "wandb"] and "log" not in args.overrides


def test_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(loggers.CHOICES, "wandb", "no_such_module_jaxgpt")
    with pytest.raises(UsageError, match=r"--log wandb needs .*pip install 'jaxgpt\[wandb\]'"):
        loggers.check(["wandb"])


def test_tensorboard_events_read_back(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard", reason="--log tensorboard needs tensorboard: pip install 'jaxgpt[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)
    text = tmp_path / "input.txt"
    text.write_text("hello world, the quick brown fox.\n" * 200)
    out = tmp_path / "run"
    assert train_main(["--preset", "bigram", "--data", str(text), "--out-dir", str(out), "--max-iters", "20",
                       "--set", "eval_interval=10", "eval_iters=2", "sample_chars=5", "--log", "tensorboard"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(out / loggers.TB_DIR))
    events.Reload()
    got = {(e.step, round(e.value, 5)) for e in events.Scalars("val_loss")}
    assert got == {(r["step"], round(r["val_loss"], 5)) for r in records} and len(got) == 3  # steps 0, 10, 20
    assert "log" not in json.loads((out / "config.json").read_text())["train"]


def test_wandb_offline_run_holds_the_records(tmp_path, monkeypatch):
    """--log wandb in offline mode (WANDB_DIR under tmp_path): the run's history has every metrics.jsonl record."""
    pytest.importorskip("wandb", reason="--log wandb needs wandb: pip install 'jaxgpt[wandb]'")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb").mkdir()
    seen = []
    real = loggers.WandB.write
    monkeypatch.setattr(loggers.WandB, "write", lambda self, record: (seen.append(dict(record)), real(self, record)))
    text = tmp_path / "input.txt"
    text.write_text("hello world, the quick brown fox.\n" * 200)
    out = tmp_path / "run"
    assert train_main(["--preset", "bigram", "--data", str(text), "--out-dir", str(out), "--max-iters", "20",
                       "--set", "eval_interval=10", "eval_iters=2", "sample_chars=5", "--log", "wandb"]) == 0
    import wandb
    wandb.finish()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert seen == records and [r["step"] for r in seen] == [0, 10, 20]
    runs = list((tmp_path / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb")), runs  # the offline run's data file
