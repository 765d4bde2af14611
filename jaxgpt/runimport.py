"""Weights from elsewhere as a jaxgpt run folder: `python -m jaxgpt import SOURCE --out-dir DIR --meta meta.pkl`,
or read in place: `train.py --init-from SOURCE` and `sample.py --out-dir SOURCE` take a nanoGPT `ckpt.pt` (or
nanoGPT's out folder that holds it) or a Hugging Face GPT-2 directory directly when nanoGPT's `meta.pkl` lies beside
it (`source_meta`, `source_params`).

`load_meta_pkl` reads nanoGPT's character vocabulary through an unpickler that admits plain data only.
The folder holds step 0 of an ordinary run (jaxgpt.checkpoint), so `sample.py --out-dir DIR` and
`train.py --init-from DIR` read it like any other. Formats and safety: `jaxgpt.interop`.
"""
from __future__ import annotations

import pickle
from pathlib import Path

from .config import GPTConfig
from .data import CharTokenizer, from_meta, load_tokenizer
from .data.tokenfolder import PlainUnpickler
from .errors import CheckpointError, require_extra
from .interop import from_hf, from_nanogpt_ckpt


def load_meta_pkl(path) -> CharTokenizer:
    """The character vocabulary of nanoGPT's `data/shakespeare_char/meta.pkl` ({vocab_size, itos, stoi}), read
    through an unpickler that admits plain data only: a file that would run code raises CheckpointError."""
    try:
        with open(path, "rb") as f:
            meta = PlainUnpickler(f).load()
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: {e}" if str(e).startswith("refused") else
                              f"{path} is not a readable meta.pkl (UnpicklingError: {e})") from None
    except (EOFError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path} is not a readable meta.pkl ({type(e).__name__}: {e})") from None
    itos = meta.get("itos") if isinstance(meta, dict) else None
    if not isinstance(itos, dict) or sorted(itos) != list(range(len(itos))):
        raise CheckpointError(f"{path} has no itos table of ids 0..n-1 (is it a character-level meta.pkl?)")
    return CharTokenizer([itos[i] for i in range(len(itos))])

def load_source(path, meta_pkl=None) -> tuple[GPTConfig, dict, CharTokenizer | None]:
    """(config, params, tokenizer or None) of a nanoGPT `ckpt.pt` or a Hugging Face GPT-2 directory; the tokenizer
    comes from `meta_pkl` (character vocabularies only; GPT-2's BPE has no jaxgpt tokenizer)."""
    path = nanogpt_folder(path)
    if path.is_dir() and not (path / "config.json").is_file():
        raise CheckpointError(f"{path} holds nothing to import: neither a nanoGPT ckpt.pt nor a Hugging Face model "
                              f"(config.json beside model.safetensors or pytorch_model.bin)")
    if path.is_dir():
        config, params = from_hf(path)
    elif path.is_file():
        config, params = from_nanogpt_ckpt(path)
    else:
        raise CheckpointError(f"{path} is neither a nanoGPT ckpt.pt nor a Hugging Face model directory")
    tokenizer = None if meta_pkl is None else load_meta_pkl(meta_pkl)
    if tokenizer is not None and tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(f"{meta_pkl} has {tokenizer.vocab_size} characters but {path} has vocab_size "
                              f"{config.vocab_size}")
    return config, params, tokenizer


def write_run(out_dir, config: GPTConfig, params, tokenizer: CharTokenizer, data: str = "tinyshakespeare") -> None:
    """Write `params` as step 0 of a jaxgpt run folder, which `sample.py --out-dir` and `train.py --init-from`
    read like any run (`data`: what --init-from trains on by default). Refuses a folder that holds checkpoints."""
    from . import checkpoint as ckpt
    from .config import TrainConfig
    from .training import create_state

    if ckpt.has_checkpoints(out_dir):
        raise CheckpointError(f"{out_dir} already holds checkpoints; import into a new folder")
    tc = TrainConfig(tokenizer=tokenizer.kind)
    if tokenizer.kind != "char":  # GPT-2's tokenizer.json: the run folder's file is what sample.py reads
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        tokenizer.save(Path(out_dir) / "tokenizer.json")

    @ckpt.quiet_orbax  # step 0 has no val_loss, which Orbax's best-step tracking would log a warning about
    def save():
        with ckpt.manager(Path(out_dir)) as mgr:
            ckpt.save(mgr, create_state(config, tc, params), ckpt.run_meta(config, tc, tokenizer, data=data,
                                                                          preset=""))
            mgr.wait_until_finished()
    save()


IMPORT_HELP = ("A nanoGPT ckpt.pt or a Hugging Face GPT-2 directory as a jaxgpt run folder, which sample.py "
               "--out-dir and train.py --init-from read like any run.")


def import_main(argv: list[str]) -> int:
    """`python -m jaxgpt import SOURCE --out-dir DIR [--meta meta.pkl]`: IMPORT_HELP. 0 when written, 2 for bad
    input (one line on stderr)."""
    import argparse
    import sys

    from .errors import JaxgptError, UsageError

    p = argparse.ArgumentParser(prog="python -m jaxgpt import", description=IMPORT_HELP)
    p.add_argument("source", type=Path, help="a nanoGPT ckpt.pt or a Hugging Face GPT-2 directory")
    p.add_argument("--out-dir", type=Path, required=True, help="the new run folder")
    p.add_argument("--meta", type=Path, help="nanoGPT's meta.pkl: the character vocabulary (needed for text)")
    p.add_argument("--tokenizer", type=Path, help="a Hugging Face tokenizer.json instead (GPT-2's: its text)")
    p.add_argument("--data", default="tinyshakespeare", help="what train.py --init-from DIR trains on by default")
    args = p.parse_args(argv)
    try:
        config, params, tokenizer = load_source(args.source, args.meta)  # first: what the source holds
        if args.tokenizer is not None:
            tokenizer = _checked_tokenizer(args.tokenizer, config, args.source)
        elif tokenizer is None:
            raise UsageError(f"{args.source} holds weights but no tokenizer: pass --meta meta.pkl (a character "
                             f"vocabulary, e.g. nanoGPT's data/shakespeare_char/meta.pkl) or --tokenizer "
                             f"tokenizer.json (GPT-2's); without one, use the library (jaxgpt.runimport.load_source) "
                             f"on token ids")
        write_run(args.out_dir, config, params, tokenizer, data=args.data)
    except (JaxgptError, ImportError) as e:
        print(f"python -m jaxgpt import: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.source} as step 0 of {args.out_dir}: sample.py --out-dir {args.out_dir}, "
          f"train.py --init-from {args.out_dir} --out-dir NEW")
    return 0


def _checked_tokenizer(path, config: GPTConfig, source):
    tokenizer = load_tokenizer(path, "file")
    if tokenizer.vocab_size > config.vocab_size:  # nanoGPT pads GPT-2's 50257 to 50304: fewer is fine
        raise CheckpointError(f"{path} has {tokenizer.vocab_size} tokens but {source} has vocab_size "
                              f"{config.vocab_size}")
    return tokenizer


def nanogpt_folder(path) -> Path:
    """nanoGPT's out folder (`sample.py --out_dir=out-shakespeare-char`) stands for its `ckpt.pt`: a folder that
    holds a ckpt.pt and no checkpoints/ of a run is taken as that file; any other path is returned as it is."""
    path = Path(path)
    return path / "ckpt.pt" if (path / "ckpt.pt").is_file() and not (path / "checkpoints").exists() else path


def is_foreign(path) -> bool:
    """A nanoGPT `ckpt.pt` (a .pt file, or a folder holding one) or a Hugging Face model directory (with its
    weights), not a run folder."""
    path = nanogpt_folder(path)
    weights = ("model.safetensors", "pytorch_model.bin")
    return (path.is_file() and path.suffix == ".pt") or (path.is_dir() and any((path / n).is_file() for n in weights))


def _foreign(path) -> tuple[dict, dict]:
    """(meta as a run's step 0 would hold it, params) of a ckpt.pt or Hugging Face directory read in place."""
    from . import checkpoint as ckpt
    from . import config as cfg

    path = nanogpt_folder(path)
    require_extra(f"reading {path}", *(("torch", "torch") if path.is_file() else ("hf", "torch", "transformers")))
    meta_pkl = (path if path.is_dir() else path.parent) / "meta.pkl"
    if not meta_pkl.is_file():
        raise CheckpointError(f"{path} comes with no character vocabulary: put nanoGPT's data/<dataset>/meta.pkl "
                              f"at {meta_pkl} (jaxgpt.interop reads the weights on token ids without one)")
    config, params, tokenizer = load_source(path, meta_pkl)
    meta = ckpt.run_meta(config, cfg.TrainConfig(), tokenizer, preset="", data="tinyshakespeare")  # as write_run
    return {**meta, "step": 0}, params


def source_meta(path) -> dict:
    """The meta of a run folder's newest readable step, or of a ckpt.pt / Hugging Face directory read in place."""
    from . import checkpoint as ckpt
    return _foreign(path)[0] if is_foreign(path) else ckpt.latest_meta(path)


def source_params(path, step: int | None = None, best: bool = False, log=print):
    """`checkpoint.load_params` for a run folder, or (config, params, tokenizer, meta) of a ckpt.pt / Hugging Face
    directory read in place (which has one step: `step` and `best` are refused)."""
    from . import checkpoint as ckpt
    from . import config as cfg

    if not is_foreign(path):
        return ckpt.load_params(path, step=step, best=best, log=log)
    if step is not None or best:
        raise CheckpointError(f"{path} is a single set of weights, not a run folder: it has no --step or --best")
    meta, params = _foreign(path)
    return cfg.from_dict(meta["config"])[0], params, from_meta(meta["tokenizer"], path), meta
