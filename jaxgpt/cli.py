"""Command lines: `train.py` at the root calls `train_main` here, `sample.py` calls `sample_main` (sample_cli.py).

Bad input is one line on stderr and exit status 2; nothing on disk is touched before the input is checked.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from . import budget, loggers
from . import config as cfg
from .presets import DEFAULT_PRESET, PRESETS, get_preset
from .data import from_meta, load_tokenizer
from .errors import UsageError
from .cmdline import Parser as _Parser, enable_compile_cache, exit_status, pause_hook, prog, quiet
from .sample_cli import check_sample_args, sample_main, sample_parser  # noqa: F401  (sample.py's entry point)


# ---------------------------------------------------------------------------------------------------- train.py

def train_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=prog("train.py", "train"),
                description="Train a GPT on a text (default: Tiny Shakespeare).")
    p.add_argument("--preset", help=f"one of: {', '.join(PRESETS)} (default {DEFAULT_PRESET}; baby: characters)")
    p.add_argument("--data", help="a text file, an http(s) URL, hf:NAME[:CONFIG], tinyshakespeare (default), or a "
                                  "folder of token files (train.bin, val.bin, meta.json or meta.pkl; docs/data.md)")
    p.add_argument("--out-dir", type=Path, help="where the run's files go (default out/<preset>)")
    p.add_argument("--tokenizer", metavar="PATH", help="a Hugging Face tokenizer.json (GPT-2's, say) for the run's "
                   "tokens (default: the preset's; --set tokenizer=bpe trains a BPE on the train split)")
    p.add_argument("--max-iters", type=int, help="stop after this many steps (the lr schedule is unchanged)")
    p.add_argument("--seed", type=int, help="root of every random key (default 1337)")
    p.add_argument("--time-budget", metavar="DURATION", help="finish within DURATION (300s, 5m): fits max_iters")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config fields: --set n_layer=2 n_embd=64 (the flag may also repeat)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out-dir from its newest complete checkpoint (its config; only "
                        "--max-iters may change)")
    p.add_argument("--init-from", type=Path, metavar="DIR",
                   help="start a new run from the params of DIR's newest checkpoint (DIR's config plus --set; "
                        "e.g. --set lora_rank=4 trains adapters only)")
    loggers.add_flag(p)
    p.add_argument("--debug", action="store_true", help="on an error, print the whole traceback")
    dist = p.add_argument_group("several processes (jax.distributed; TPU pods and SLURM need none of these)")
    dist.add_argument("--coordinator", metavar="HOST:PORT",
                      help="process 0's address, the same on every process; 'auto' lets JAX read the cluster")
    dist.add_argument("--num-processes", type=int, metavar="N", help="how many processes take part")
    dist.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1 (0 prints and logs)")
    return p


def parse_train_args(argv: list[str]) -> argparse.Namespace:
    """argv -> the parsed flags, with `overrides` ({key: value} from --set, --max-iters and --seed). Pure: reads
    no file and touches no device; raises UsageError / ConfigError with a one-line message."""
    args = train_parser().parse_args(argv)
    if args.resume and args.init_from is not None:
        raise UsageError("--resume continues the run in --out-dir, --init-from starts a new one: give one of them")
    if (args.resume or args.init_from is not None) and args.out_dir is None:
        raise UsageError("--resume needs --out-dir DIR, the run to continue" if args.resume else
                         "--init-from needs --out-dir DIR for the new run")
    if args.init_from is not None and args.preset is not None:
        raise UsageError(f"--preset {args.preset} and --init-from exclude each other: the model config comes "
                         f"from {args.init_from} (change it with --set)")
    if args.tokenizer is not None and args.init_from is not None:
        raise UsageError(f"--tokenizer {args.tokenizer} and --init-from exclude each other: the tokenizer comes "
                         f"from {args.init_from}")
    args.time_budget_s = budget.check_budget_flags(args)
    flags = {"max_iters": args.max_iters, "seed": args.seed}
    args.overrides = {**cfg.parse_sets(args.set), **{k: v for k, v in flags.items() if v is not None}}
    if args.tokenizer is not None and not args.resume:  # kind file; on --resume the run's own tokenizer decides
        if args.overrides.get("tokenizer", "file") != "file":
            raise UsageError(f"--tokenizer {args.tokenizer} and --set tokenizer={args.overrides['tokenizer']} "
                             f"exclude each other: give one of them")
        args.overrides["tokenizer"] = "file"
    return args


def build_run(args: argparse.Namespace):
    """The run the flags ask for, in one flow: a base config (the preset, or the checkpoint of --resume /
    --init-from), then the overrides, then (on --resume) the check that only max_iters changed. Reads a
    checkpoint's meta, so `jax.distributed` must have started first."""
    from . import checkpoint as ckpt, runimport
    from .rundir import Run, read_run_files

    if not (args.resume or args.init_from):
        name = args.preset or DEFAULT_PRESET
        preset = get_preset(name)
        model, train = cfg.apply_overrides(preset.model, preset.train, args.overrides)
        return Run(model=model, train=train, out_dir=args.out_dir or Path("out") / name,
                   data=args.data or "tinyshakespeare", preset=name, tokenizer_file=args.tokenizer)
    if args.resume and not ckpt.has_checkpoints(args.out_dir) and (args.out_dir / "config.json").is_file():
        meta = read_run_files(args.out_dir)  # killed before its first checkpoint: start it, nothing to lose
    else:
        meta = ckpt.latest_meta(args.out_dir) if args.resume else runimport.source_meta(args.init_from)
    base = cfg.from_dict(meta["config"])
    model, train = cfg.apply_overrides(*base, args.overrides)
    common = dict(model=model, train=train, out_dir=args.out_dir, preset=meta.get("preset", ""),
                  tokenizer=from_meta(meta["tokenizer"], args.init_from or args.out_dir))
    if args.init_from is not None:
        return Run(data=args.data or meta["data"], init_from=args.init_from, **common)
    for flag, given, held in (("--preset", args.preset, meta.get("preset")), ("--data", args.data, meta["data"])):
        if given is not None and given != held:
            raise cfg.ConfigError(f"{flag} {given} conflicts with the checkpoint's {held!r}; on --resume the run's "
                                  f"config comes from {args.out_dir} and only {', '.join(RESUMABLE)} may change")
    _check_tokenizer_flag(args, common["tokenizer"])
    conflicts = [f"{k}={getattr(new, k)!r} (checkpoint: {getattr(old, k)!r})"
                 for new, old in zip((model, train), base) for k in cfg.changed_fields(new, old) if k not in RESUMABLE]
    if conflicts:
        raise cfg.ConfigError(f"{', '.join(conflicts)} conflicts with the checkpoint in {args.out_dir}; on --resume "
                              f"only {', '.join(RESUMABLE)} may change")
    changed = [f"{k} {getattr(base[1], k)} -> {getattr(train, k)}" for k in cfg.changed_fields(train, base[1])
               if k != "max_iters"]
    if changed:  # a way out of a divergence; the steps from here on differ from the run as first configured
        print(f"train.py: resuming with {', '.join(changed)}", file=sys.stderr)
    return Run(data=meta["data"], resume=True, saved_grad_clip=base[1].grad_clip if changed else None, **common)


def _check_tokenizer_flag(args, tokenizer) -> None:
    """--tokenizer on --resume names the run's own tokenizer (its tokenizer.json decides), or it is refused."""
    if args.tokenizer is not None and load_tokenizer(args.tokenizer).sha256 != tokenizer.sha256:
        raise cfg.ConfigError(f"--tokenizer {args.tokenizer} is not the tokenizer of the run in {args.out_dir} "
                              f"({tokenizer.kind}, vocab {tokenizer.vocab_size}: its tokenizer.json); on --resume "
                              f"the run's own tokenizer is used, drop --tokenizer")


RESUMABLE = ("max_iters", "learning_rate", "grad_clip", "warmup_iters")  # what --resume may change (divergence)


def train_main(argv: list[str] | None = None, on_event=None, clock=None) -> int:
    """`train.py`: 0 when the run finished, 2 for bad input, 1 for a fault (a diverged run, a bug), 128 + n for
    signal n; `on_event` and `clock` go to loop.train."""
    from . import loop, sharding

    quiet()
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = parse_train_args(argv)
        sharding.initialize(args.coordinator, args.num_processes, args.process_id)  # before any device or Orbax
        run = budget.with_budget(build_run(args), args.time_budget_s, clock)
        enable_compile_cache()
        loop.train(run, on_event=pause_hook(loggers.chain(args.log, run, on_event)), clock=clock)
    except loop.Interrupted as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:  # before the loop installed its handlers, or a second Ctrl-C
        print("train.py: interrupted; complete checkpoints (if any) are kept, resume with --resume", file=sys.stderr)
        return 128 + signal.SIGINT
    except Exception as e:
        return exit_status("train.py", e, debug)
    return 0



# ---------------------------------------------------------------------------------------------------- prepare

def prepare_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=prog("jaxgpt-prepare", "prepare"),  # no root script: the console command is the default
                description="Tokenize a text into train.bin / val.bin + meta.json (nanoGPT's format, docs/data.md).")
    p.add_argument("--data", default="tinyshakespeare",
                   help="a text file, an http(s) URL, hf:NAME[:CONFIG], or tinyshakespeare (default)")
    p.add_argument("--out-dir", type=Path, required=True, help="the folder of token files")
    p.add_argument("--tokenizer", default="char", metavar="char|bpe|PATH",
                   help="char (default), bpe (trained on the train split), or a Hugging Face tokenizer.json")
    p.add_argument("--vocab-size", type=int, default=2048, help="bpe: the vocabulary to train (default 2048)")
    p.add_argument("--debug", action="store_true", help="on an error, print the whole traceback")
    return p


def prepare_main(argv: list[str] | None = None) -> int:
    """`jaxgpt-prepare` / `python -m jaxgpt prepare`: 0 when the folder is complete, 2 for bad input."""
    from .data.prepare import prepare_data

    argv = sys.argv[1:] if argv is None else argv
    try:
        args = prepare_parser().parse_args(argv)
        kind, file = (args.tokenizer, None) if args.tokenizer in ("char", "bpe") else ("file", args.tokenizer)
        prepare_data(args.data, args.out_dir, kind, args.vocab_size, file)
    except Exception as e:
        return exit_status("jaxgpt-prepare", e, "--debug" in argv)
    return 0
