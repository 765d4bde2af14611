"""`sample.py`: sample text from a run's checkpoint (or an n-gram run's counts), or draw its attention.

Bad input is one line on stderr and exit status 2; `--out FILE` is written only once every sample exists.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import numpy as np

from . import config as cfg
from .cmdline import Parser as _Parser, enable_compile_cache, exit_status, prog, quiet
from .data import CharTokenizer, HFTokenizer, from_meta
from .errors import UsageError


def sample_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=prog("sample.py", "sample"),
                description="Sample text from a run's checkpoint (reads params only).")
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
    tokenizer = from_meta(meta["tokenizer"], args.out_dir)
    prompt = [int(t) for t in _encode_prompt(tokenizer, args.prompt)]
    seed = cfg.from_dict(meta["config"])[1].seed
    key = make_keys(seed if args.seed is None else args.seed)["sample"]
    temperature = 0.0 if args.greedy else (args.temperature or 1.0)
    for i in range(args.num_samples):
        out = model.generate(prompt, args.max_new_tokens, rng_from_key(jax.random.fold_in(key, i)), temperature)
        write(f"{'-' * 16} sample {i + 1}/{args.num_samples} {'-' * 16}\n" + tokenizer.decode(out) + "\n")


def _encode_prompt(tokenizer: CharTokenizer | HFTokenizer, prompt: str) -> np.ndarray:
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
    from .runimport import source_params
    from .ngram import FILE
    from .training import make_keys

    if (args.out_dir / FILE).is_file():  # a count model: no checkpoint, no network
        return _sample_ngram(args, write)
    mc, params, tokenizer, meta = source_params(args.out_dir, step=args.step, best=args.best,
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
        shown = ""  # sample 1's text written so far: a subword's bytes may end mid-character, so whole text is decoded
        for chunk in sampling.generate_stream(params, mc, np.repeat(prompt, n, 0), args.max_new_tokens, key, **kw):
            chunk = np.asarray(chunk)
            for i in range(n):
                rest[i].append(chunk[i])
            text = tokenizer.decode(chunk[0]) if tokenizer.kind == "char" else \
                tokenizer.decode(np.concatenate(rest[0]))[len(shown):]
            if not text.endswith("\ufffd") or tokenizer.kind == "char":
                write(text)
                shown += text
        write(tokenizer.decode(np.concatenate(rest[0]))[len(shown):] if tokenizer.kind != "char" else "")
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
