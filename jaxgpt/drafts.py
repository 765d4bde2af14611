"""`sample.py --draft DIR`: a run folder (an n-gram count model or a GPT) as the draft of speculative sampling.

The draft must share the model's vocabulary character for character (the same tokenizer.json), else its token ids
mean other characters and the proposals would be noise; such a draft is refused.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .checkpoint import load_params
from .data import CharTokenizer, load_tokenizer
from .errors import ConfigError, UsageError
from .ngram import FILE, NGramModel
from .speculative import GPTDraft, NGramDraft, speculative_generate


def load_draft(draft_dir: Path, tokenizer: CharTokenizer) -> NGramDraft | GPTDraft:
    """The draft in `draft_dir`, checked to use `tokenizer`'s characters in the same order."""
    tok_file = draft_dir / "tokenizer.json"
    if not tok_file.is_file():
        raise UsageError(f"--draft {draft_dir}: no tokenizer.json there; give a run folder (train.py --out-dir)")
    theirs = load_tokenizer(tok_file)
    if theirs.sha256 != tokenizer.sha256:
        raise ConfigError(f"--draft {draft_dir}: its vocabulary ({theirs.vocab_size} characters) is not the model's "
                          f"({tokenizer.vocab_size} characters); a draft must share the model's tokenizer")
    if (draft_dir / FILE).is_file():
        return NGramDraft(NGramModel.load(draft_dir / FILE))
    config, params, _, _ = load_params(draft_dir, log=lambda m: print(m, file=sys.stderr))
    return GPTDraft(params, config)


def generator(args, tokenizer: CharTokenizer, k: int = 4):
    """`sampling.generate`'s signature, sampling speculatively with the draft of `args.draft`; prints the
    acceptance rate to stderr. One sample at a time: rows of a batch would accept different counts."""
    clash = [f for f, on in (("--beams", args.beams is not None), ("--stream", args.stream),
                             ("--num-samples", args.num_samples > 1)) if on]
    if clash:
        raise UsageError(f"--draft samples one sequence at a time; drop {', '.join(clash)}")
    draft = load_draft(args.draft, tokenizer)

    def generate(params, config, prompt_tokens, max_new_tokens, key, **strategy):
        out, stats = speculative_generate(params, config, prompt_tokens, max_new_tokens, key, draft, k=k, **strategy)
        print(f"speculative: k={k}, {stats.accepted}/{stats.drafted} drafted tokens accepted "
              f"({stats.acceptance:.0%}) in {stats.rounds} GPT rounds, {stats.fallback} past the cache by exact steps",
              file=sys.stderr)
        return out
    return generate
