"""Command lines: `train.py` and `sample.py` at the root call `train_main` / `sample_main` here.

Bad input is one line on stderr and exit status 2; nothing on disk is touched before the input is checked.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import jax
import numpy as np

from . import budget, loggers
from . import config as cfg
from .presets import PRESETS, get_preset
from .data import CharTokenizer
from .errors import UsageError
from .cmdline import enable_compile_cache, exit_status, pause_hook, quiet


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


# ---------------------------------------------------------------------------------------------------- train.py

def train_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="train.py", description="Train a character-level GPT on a text (default: Tiny Shakespeare).")
    p.add_argument("--preset", help=f"one of: {', '.join(PRESETS)} (default baby)")
    p.add_argument("--data", help="a text file, an http(s) URL, hf:NAME[:CONFIG], or tinyshakespeare (default)")
    p.add_argument("--out-dir", type=Path, help="where the run's files go (default out/<preset>)")
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
    args.time_budget_s = budget.check_budget_flags(args)
    flags = {"max_iters": args.max_iters, "seed": args.seed}
    args.overrides = {**cfg.parse_sets(args.set), **{k: v for k, v in flags.items() if v is not None}}
    return args


def build_run(args: argparse.Namespace):
    """The run the flags ask for, in one flow: a base config (the preset, or the checkpoint of --resume /
    --init-from), then the overrides, then (on --resume) the check that only max_iters changed. Reads a
    checkpoint's meta, so `jax.distributed` must have started first."""
    from . import checkpoint as ckpt
    from .rundir import Run, read_run_files

    if not (args.resume or args.init_from):
        name = args.preset or "baby"
        preset = get_preset(name)
        model, train = cfg.apply_overrides(preset.model, preset.train, args.overrides)
        return Run(model=model, train=train, out_dir=args.out_dir or Path("out") / name,
                   data=args.data or "tinyshakespeare", preset=name)
    if args.resume and not ckpt.has_checkpoints(args.out_dir) and (args.out_dir / "config.json").is_file():
        meta = read_run_files(args.out_dir)  # killed before its first checkpoint: start it, nothing to lose
    else:
        meta = ckpt.latest_meta(args.out_dir if args.resume else args.init_from)
    base = cfg.from_dict(meta["config"])
    model, train = cfg.apply_overrides(*base, args.overrides)
    common = dict(model=model, train=train, out_dir=args.out_dir, preset=meta.get("preset", ""),
                  tokenizer=CharTokenizer(meta["tokenizer"]))
    if args.init_from is not None:
        return Run(data=args.data or meta["data"], init_from=args.init_from, **common)
    for flag, given, held in (("--preset", args.preset, meta.get("preset")), ("--data", args.data, meta["data"])):
        if given is not None and given != held:
            raise cfg.ConfigError(f"{flag} {given} conflicts with the checkpoint's {held!r}; on --resume the run's "
                                  f"config comes from {args.out_dir} and only {', '.join(RESUMABLE)} may change")
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


# ---------------------------------------------------------------------------------------------------- sample.py

def sample_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sample.py", description="Sample text from a run's checkpoint (reads params only).")
    p.add_argument("--out-dir", type=Path, required=True, help="the run's out-dir (holds checkpoints/)")
    p.add_argument("--prompt", default="\n", help="text to continue (default a newline)")
    p.add_argument("--max-new-tokens", type=int, default=500, help="characters generated per sample (default 500)")
    p.add_argument("--num-samples", type=int, default=1, help="how many samples (default 1)")
    p.add_argument("--temperature", type=float, help="> 0; softmax(logits / temperature) (default 1.0)")
    p.add_argument("--top-k", type=int, help="sample only among the k most likely characters, 1..vocab")
    p.add_argument("--top-p", type=float, help="nucleus sampling: the smallest set with probability >= p, (0, 1]")
    p.add_argument("--greedy", action="store_true", help="always the most likely character (deterministic)")
    p.add_argument("--beams", type=int, metavar="W", help="beam search with W beams; prints all W, best first")
    p.add_argument("--stream", action="store_true", help="print characters as they are generated")
    p.add_argument("--seed", type=int, help="sampling seed (default: the run's seed)")
    p.add_argument("--draft", type=Path, metavar="DIR", help="speculative sampling: run DIR (n-gram or GPT) drafts")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--step", type=int, help="use this checkpoint step (default: the newest)")
    which.add_argument("--best", action="store_true", help="use the checkpoint with the lowest val loss")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the samples to FILE instead of printing them")
    p.add_argument("--attention-png", type=Path, metavar="FILE",
                   help="draw every layer's and head's attention over --prompt into FILE (needs matplotlib), no sample")
    p.add_argument("--debug", action="store_true", help="on an error, print the whole traceback")
    return p


def check_sample_args(args) -> None:
    """Range checks that need no checkpoint; vocabulary-dependent ones run after loading."""
    for name in ("max_new_tokens", "num_samples", "beams"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} {value} must be >= 1")
    if args.temperature is not None and not 0 < args.temperature < float("inf"):  # also refuses nan
        raise UsageError(f"--temperature {args.temperature} must be a finite number > 0 (greedy: --greedy)")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UsageError(f"--top-p {args.top_p} must be in (0, 1]")
    if args.step is not None and args.step < 0:
        raise UsageError(f"--step {args.step} must be >= 0")
    sampling = [f for f, v in (("--temperature", args.temperature), ("--top-k", args.top_k),
                               ("--top-p", args.top_p), ("--greedy", args.greedy or None)) if v is not None]
    if args.greedy and sampling != ["--greedy"]:
        raise UsageError(f"--greedy takes no {', '.join(f for f in sampling if f != '--greedy')}")
    if args.beams is not None:
        clash = sampling + [f for f, on in (("--stream", args.stream), ("--num-samples", args.num_samples > 1)) if on]
        if clash:
            raise UsageError(f"--beams is deterministic and prints all {args.beams} beams; drop {', '.join(clash)}")
    if args.out is not None and not args.out.parent.is_dir():
        raise UsageError(f"--out {args.out}: folder {args.out.parent} does not exist")


def _sample_ngram(args, write) -> None:
    """sample.py on an n-gram out-dir: --prompt, --max-new-tokens, --num-samples, --temperature, --greedy, --seed."""
    from .ngram import FILE, NGramModel, rng_from_key
    from .training import make_keys

    unsupported = [f for f, v in (("--top-k", args.top_k), ("--top-p", args.top_p), ("--beams", args.beams),
                                  ("--step", args.step), ("--best", args.best or None), ("--draft", args.draft),
                                  ("--attention-png", args.attention_png)) if v is not None]
    if unsupported:
        raise UsageError(f"{', '.join(unsupported)} not available for an n-gram model ({args.out_dir / FILE}); "
                         f"it takes --prompt, --max-new-tokens, --num-samples, --temperature, --greedy, --seed")
    from .rundir import read_run_files

    meta = read_run_files(args.out_dir)
    model = NGramModel.load(args.out_dir / FILE)
    tokenizer = CharTokenizer(meta["tokenizer"])
    prompt = [int(t) for t in _encode_prompt(tokenizer, args.prompt)]
    seed = cfg.from_dict(meta["config"])[1].seed
    key = make_keys(seed if args.seed is None else args.seed)["sample"]
    temperature = 0.0 if args.greedy else (args.temperature or 1.0)
    for i in range(args.num_samples):
        out = model.generate(prompt, args.max_new_tokens, rng_from_key(jax.random.fold_in(key, i)), temperature)
        write(f"{'-' * 16} sample {i + 1}/{args.num_samples} {'-' * 16}\n" + tokenizer.decode(out) + "\n")


def _encode_prompt(tokenizer: CharTokenizer, prompt: str) -> np.ndarray:
    try:
        return tokenizer.encode(prompt or "\n")
    except ValueError as e:
        raise UsageError(f"--prompt: {e}") from None


def _attention_png(args, params, mc, tokenizer) -> str:
    """--attention-png FILE: every layer's and head's attention over the prompt's last block_size characters."""
    from .viz import attention_png, have_matplotlib

    if not have_matplotlib():
        raise UsageError("--attention-png needs matplotlib: pip install 'jaxgpt[viz]'")
    png = args.attention_png
    if not png.parent.is_dir():
        raise UsageError(f"--attention-png {png}: folder {png.parent} does not exist")
    if mc.model != "gpt" or mc.n_layer == 0:
        raise UsageError(f"--attention-png: model {mc.model!r} with n_layer {mc.n_layer} has no attention to draw")
    idx = np.asarray(_encode_prompt(tokenizer, args.prompt), np.int32)[-mc.block_size:]
    attention_png(params, mc, tokenizer, idx, png)
    return f"wrote {mc.n_layer} x {mc.n_head} attention maps of {len(idx)} characters to {png}\n"


def _sample(args, write) -> None:
    from . import drafts, sampling
    from .checkpoint import load_params
    from .ngram import FILE
    from .training import make_keys

    if (args.out_dir / FILE).is_file():  # a count model: no checkpoint, no network
        return _sample_ngram(args, write)
    mc, params, tokenizer, meta = load_params(args.out_dir, step=args.step, best=args.best,
                                              log=lambda m: print(m, file=sys.stderr))
    if mc.lora_rank:  # fold the adapters into the kernels: the same logits, no adapter cost per token
        from .lora import merge_lora
        params, mc = merge_lora(params, mc)
    if args.attention_png is not None:
        return write(_attention_png(args, params, mc, tokenizer))
    if args.top_k is not None and not 1 <= args.top_k <= mc.vocab_size:
        raise UsageError(f"--top-k {args.top_k} must be in 1..{mc.vocab_size} (the vocabulary size)")
    prompt = np.asarray(_encode_prompt(tokenizer, args.prompt), np.int32)[None, :]  # (1, T)
    seed = cfg.from_dict(meta["config"])[1].seed if args.seed is None else args.seed
    key = make_keys(seed)["sample"]
    kw = dict(temperature=0.0 if args.greedy else (args.temperature or 1.0), top_k=args.top_k, top_p=args.top_p)
    rule = lambda title: f"{'-' * 16} {title} {'-' * 16}\n"
    gen = sampling.generate if args.draft is None else drafts.generator(args, tokenizer)  # --draft: speculative

    if args.beams is not None:
        seqs, logprobs = sampling.beam_search(params, mc, prompt, args.max_new_tokens, beam_width=args.beams)
        for i in range(args.beams):
            write(rule(f"beam {i + 1}/{args.beams}, log-prob {float(logprobs[i]):.3f}")
                  + tokenizer.decode(seqs[i]) + "\n")
    elif args.stream:  # the whole batch streams with `key`, so the text is the unstreamed text; sample 1 prints live
        n, head = args.num_samples, tokenizer.decode(prompt[0])
        rest = [[] for _ in range(n)]
        write(rule(f"sample 1/{n}") + head)
        for chunk in sampling.generate_stream(params, mc, np.repeat(prompt, n, 0), args.max_new_tokens, key, **kw):
            chunk = np.asarray(chunk)
            write(tokenizer.decode(chunk[0]))
            for i in range(1, n):
                rest[i].append(chunk[i])
        write("\n")
        for i in range(1, n):
            write(rule(f"sample {i + 1}/{n}") + head + tokenizer.decode(np.concatenate(rest[i])) + "\n")
    else:
        out = gen(params, mc, np.repeat(prompt, args.num_samples, 0), args.max_new_tokens, key, **kw)
        for i in range(args.num_samples):
            write(rule(f"sample {i + 1}/{args.num_samples}") + tokenizer.decode(out[i]) + "\n")


def sample_main(argv: list[str] | None = None) -> int:
    """`sample.py`: 0 when the samples were written, 2 for bad input, 1 for a fault."""
    quiet()
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = sample_parser().parse_args(argv)
        check_sample_args(args)
        enable_compile_cache()
        if args.out is None:
            _sample(args, lambda text: print(text, end="", flush=True))
        else:  # written once all samples exist, so a failed run leaves an existing FILE as it was
            parts = []
            _sample(args, parts.append)
            args.out.write_text("".join(parts), encoding="utf-8")
            print(f"wrote {args.num_samples if args.beams is None else args.beams} sample(s) to {args.out}")
    except Exception as e:
        return exit_status("sample.py", e, debug)
    return 0
