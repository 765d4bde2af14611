"""Command lines: `train.py` and `sample.py` at the root call `train_main` / `sample_main` here.

Bad input is one line on stderr and exit status 2; nothing on disk is touched before the input is checked.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import config as cfg
from .data import DataError, cache_dir


class UsageError(Exception):
    """Raised by the parsers instead of exiting, so errors stay one line and tests stay in-process."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def enable_compile_cache() -> None:
    """Persistent XLA compilation cache under $JAXGPT_CACHE_DIR: a repeat run skips compilation."""
    import jax
    jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def train_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="train.py", description="Train a character-level GPT on a text (default: Tiny Shakespeare).")
    p.add_argument("--preset", default="baby", help=f"one of: {', '.join(cfg.PRESETS)} (default baby)")
    p.add_argument("--data", default="tinyshakespeare",
                   help="a text file, an http(s) URL, hf:NAME[:CONFIG], or tinyshakespeare (default)")
    p.add_argument("--out-dir", type=Path, help="where the run's files go (default out/<preset>)")
    p.add_argument("--max-iters", type=int, help="stop after this many steps (the lr schedule is unchanged)")
    p.add_argument("--seed", type=int, help="root of every random key (default 1337)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config field")
    return p


def parse_train_args(argv: list[str]):
    """argv -> (Run, args); raises UsageError / ConfigError with a one-line message."""
    from .loop import Run

    args = train_parser().parse_args(argv)
    preset = cfg.get_preset(args.preset)
    overrides = list(args.set)
    if args.max_iters is not None:
        overrides.append(f"max_iters={args.max_iters}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    model, train = cfg.apply_overrides(preset.model, preset.train, overrides)
    model.validate()
    train.validate()
    out_dir = args.out_dir or Path("out") / args.preset
    return Run(model=model, train=train, out_dir=out_dir, data=args.data, preset=args.preset), args


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def train_main(argv: list[str] | None = None) -> int:
    from .loop import RunError, train

    argv = sys.argv[1:] if argv is None else argv
    try:
        run, _ = parse_train_args(argv)
        enable_compile_cache()
        train(run)
    except (UsageError, cfg.ConfigError, DataError, RunError) as e:
        return _fail("train.py", str(e))
    return 0
