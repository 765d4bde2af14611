"""Orbax checkpoints of a run: the whole TrainState plus what it takes to rebuild the run without its command.

Layout: `<out-dir>/checkpoints/<step>/` holds three Orbax items, so a reader loads only what it needs:
  params  the model parameters (all that sampling reads): with TrainConfig.ema_decay > 0 their moving average
  train   the optimizer state, the step and the training key (and, with a moving average, the live params)
  meta    JSON: the effective config, the tokenizer's characters, the data source, val loss, fingerprints
Orbax writes each step into a `*.orbax-checkpoint-tmp-*` folder and renames it when complete, so a kill leaves
either a whole step or a temp folder that no reader looks at. It does not checksum: a flipped byte reads back as a
wrong number. So `meta` carries a fingerprint of each array item, taken on the device at save time and checked on
every restore; a step that fails to read or to match is skipped with a warning (resume) or refused (--step N).
"""
from __future__ import annotations

import functools
import hashlib
import logging
import shutil
import warnings
from functools import partial
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from . import config as cfg
from . import sharding
from .data import CharTokenizer, HFTokenizer, from_meta
from .errors import CheckpointError
from .model import init_params
from .ngram import FILE as NGRAM_FILE
from .params import Params, mismatch_error, mismatches
from .training import TrainState, create_state, eval_params

CKPT_DIR = "checkpoints"
BROKEN_DIR = "checkpoints.broken"   # unreadable steps newer than the one resumed are moved here, never deleted
FORMAT = 1


# ---------------------------------------------------------------------------------------------------- fingerprints

def _as_uint32(x: jax.Array) -> jax.Array:
    bits = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[x.dtype.itemsize]
    x = x.astype(jnp.uint8) if x.dtype == jnp.bool_ else x
    return jax.lax.bitcast_convert_type(x, bits).astype(jnp.uint32).reshape(-1)


@jax.jit
def _leaf_sums(leaves):
    """Two position-weighted sums of each leaf's bits, mod 2^32. Both weights are odd, so any single changed word
    changes both sums; integer adds are exact, so the result does not depend on how a sharded array is split."""
    def one(x):
        u = _as_uint32(x)
        i = jnp.arange(u.size, dtype=jnp.uint32)
        return jnp.stack([jnp.sum(u * (2 * i + 1)), jnp.sum(u * (i * jnp.uint32(0x9E3779B9) | 1))])
    return [one(x) for x in leaves]


def fingerprint(tree) -> str:
    """A short hex digest of a pytree of arrays: paths, shapes, dtypes and every bit of the values."""
    paths_leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    sums = jax.device_get(_leaf_sums([leaf for _, leaf in paths_leaves]))
    h = hashlib.sha256()
    for (path, leaf), s in zip(paths_leaves, sums):
        h.update(f"{jax.tree_util.keystr(path)}:{leaf.shape}:{leaf.dtype}:{int(s[0])}:{int(s[1])};".encode())
    return h.hexdigest()[:32]


# ---------------------------------------------------------------------------------------------------- the manager

def manager(out_dir: Path, keep: int = 3, read_only: bool = False) -> ocp.CheckpointManager:
    """Keeps the latest `keep` steps plus the one with the lowest val_loss (among steps saved with one), which
    `best_step()` names."""
    val_loss = lambda metrics: metrics["val_loss"]
    keep_policy = policies.AnyPreservationPolicy([
        policies.LatestN(keep),
        policies.BestN(get_metric_fn=val_loss, reverse=True, n=1,  # reverse: keeps the lowest
                       keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(
        preservation_policy=keep_policy, best_fn=val_loss, best_mode="min", create=not read_only,
        read_only=read_only, cleanup_tmp_directories=not read_only,  # a temp folder is a save a kill cut short
        enable_async_checkpointing=True)
    handlers = {"params": ocp.StandardCheckpointHandler(), "train": ocp.StandardCheckpointHandler(),
                "meta": ocp.JsonCheckpointHandler(), "data": ocp.JsonCheckpointHandler()}  # named up front, so
    # item_metadata works before any restore; `data` is the shard path's loader state (feeds.Shards)
    return ocp.CheckpointManager(Path(out_dir).absolute() / CKPT_DIR, options=options, item_handlers=handlers)


def has_checkpoints(out_dir: Path) -> list[int]:
    """Steps present under out_dir/checkpoints (complete or not), without creating anything."""
    d = Path(out_dir) / CKPT_DIR
    return sorted(int(p.name) for p in d.iterdir() if p.is_dir() and p.name.isdigit()) if d.is_dir() else []


def run_meta(mc: cfg.GPTConfig, tc: cfg.TrainConfig, tokenizer: CharTokenizer | HFTokenizer, **extra) -> dict:
    """The part of `meta` that is the same for every step of a run. The tokenizer: its characters, or (bpe, file)
    its kind, size and hash, the file itself being the run folder's tokenizer.json."""
    return {"format": FORMAT, "config": cfg.to_dict(mc, tc), "tokenizer": tokenizer.to_meta(), **extra}


def save(mgr: ocp.CheckpointManager, state: TrainState, meta: dict, val_loss: float | None = None,
         data: dict | None = None) -> None:
    """Start an asynchronous save of `state` at its step (and the loader's `data` state, in the same step);
    returns once the arrays are copied off the device."""
    step, shown = int(state.step), eval_params(state)
    train = {"opt_state": state.opt_state, "step": state.step, "key": state.key,
             **({} if state.ema is None else {"params": state.params})}
    meta = {**meta, "step": step, "val_loss": val_loss,
            "fingerprint": {"params": fingerprint(shown), "train": fingerprint(train)}}
    mgr.save(step, force=True, metrics=None if val_loss is None else {"val_loss": val_loss},
             args=ocp.args.Composite(params=ocp.args.StandardSave(shown),
                                     train=ocp.args.StandardSave(train), meta=ocp.args.JsonSave(meta),
                                     **({} if data is None else {"data": ocp.args.JsonSave(data)})))


def read_data_state(out_dir: Path, step: int) -> dict | None:
    """The loader state saved with `step` (None when the step has none: a run on the in-memory path)."""
    with manager(out_dir, read_only=True) as mgr:
        if not (Path(mgr.directory) / str(step) / "data").is_dir():
            return None
        return mgr.restore(step, args=ocp.args.Composite(data=ocp.args.JsonRestore()))["data"]


# ---------------------------------------------------------------------------------------------------- restoring

def abstract_state(mc: cfg.GPTConfig, tc: cfg.TrainConfig) -> TrainState:
    """Shapes and dtypes of the TrainState, nothing computed: the restore target (shardings can be attached)."""
    return jax.eval_shape(partial(create_state, mc, tc))


def abstract_params(mc: cfg.GPTConfig):
    return jax.eval_shape(partial(init_params, mc), jax.ShapeDtypeStruct((2,), jnp.uint32))


def _unreadable(mgr, step: int, e: Exception) -> CheckpointError:
    reason = str(e).splitlines()[0][:200] if str(e) else ""
    return CheckpointError(f"checkpoint step {step} in {mgr.directory} is unreadable ({type(e).__name__}: {reason})")


def read_meta(mgr, step: int) -> dict:
    """A step's meta item (config, vocabulary, fingerprints); CheckpointError if it is missing or not ours."""
    try:
        meta = mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # Orbax raises many types for a damaged folder; all mean "unreadable"
        raise _unreadable(mgr, step, e) from None
    needed = ("config", "tokenizer", "fingerprint")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("step") != step or \
            not all(k in meta for k in needed):
        raise CheckpointError(f"checkpoint step {step} in {mgr.directory} has no valid metadata")
    return meta


def restore_step(mgr, step: int, target: TrainState | None = None, params_only: bool = False):
    """Read one step into `target` (default: built from the step's own config); checks shapes and fingerprints.
    Returns (state or params, meta). Raises CheckpointError if the step cannot be trusted."""
    meta = read_meta(mgr, step)
    if target is None:
        mc, tc = cfg.from_dict(meta["config"])
        target = abstract_params(mc) if params_only else abstract_state(mc, tc)
    target = sharding.with_shardings(target)  # onto this run's devices, whatever devices wrote the step
    items = {"params": target if params_only else eval_params(target)}
    if not params_only:
        items["train"] = {"opt_state": target.opt_state, "step": target.step, "key": target.key,
                          **({} if target.ema is None else {"params": target.params})}
    # Orbax refuses a target of another shape with the same kind of error as a damaged file, which would send a
    # resume back to an older step: name what does not fit instead.
    try:
        stored = mgr.item_metadata(step)["params"]
    except Exception as e:
        raise _unreadable(mgr, step, e) from None
    problems = mismatches(items["params"], stored) if stored is not None else []
    if problems:
        raise mismatch_error(f"checkpoint step {step} in {mgr.directory}", problems)
    try:
        got = mgr.restore(step, args=ocp.args.Composite(**{k: ocp.args.StandardRestore(v) for k, v in items.items()}))
    except Exception as e:
        raise _unreadable(mgr, step, e) from None
    for name in items:
        if fingerprint(got[name]) != meta["fingerprint"][name]:
            raise CheckpointError(f"checkpoint step {step} in {mgr.directory}: {name} does not match the "
                                  f"fingerprint written with it (damaged on disk)")
    if params_only:
        return got["params"], meta
    train = {"params": got["params"], **got["train"]}  # the live params are in train when params is their average
    return TrainState(**train, ema=None if target.ema is None else got["params"]), meta


def first_readable(mgr, steps, read: Callable[[int], object], log: Callable[[str], None] | None = print):
    """(step, read(step), skipped steps) for the first of `steps` that `read` accepts. Each step it refuses with a
    CheckpointError is skipped, with a warning through `log` (None: silently)."""
    skipped = []
    for step in steps:
        try:
            return step, read(step), skipped
        except CheckpointError as e:
            if log is not None:
                log(f"warning: {e}; falling back to the previous checkpoint")
            skipped.append(step)
    tried = f" (tried steps {', '.join(map(str, skipped))})" if skipped else ""
    raise CheckpointError(f"no complete checkpoint in {mgr.directory}{tried}")


def newest_first(mgr) -> list[int]:
    mgr.reload()
    return sorted(mgr.all_steps(), reverse=True)


def restore_latest(mgr, target: TrainState | None = None, log=print):
    """The newest step that reads back whole: (state, meta, skipped steps). Each skipped step is a warning."""
    _, (state, meta), skipped = first_readable(mgr, newest_first(mgr), lambda s: restore_step(mgr, s, target), log)
    return state, meta, skipped


def set_aside(out_dir: Path, steps: list[int], log=print) -> None:
    """Move unreadable steps out of the manager's folder, so the resumed run can write those steps again."""
    for step in steps:
        dest = Path(out_dir) / BROKEN_DIR / str(step)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(dest, ignore_errors=True)  # an older copy of the same step
        shutil.move(str(Path(out_dir) / CKPT_DIR / str(step)), dest)
        log(f"moved unreadable checkpoint step {step} to {dest}")


# ---------------------------------------------------------------------------------------------------- sampling side

def _open(out_dir: Path) -> ocp.CheckpointManager:
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise CheckpointError(f"out-dir {out_dir} is a file, not a run's folder" if out_dir.exists() else
                              f"out-dir {out_dir} does not exist")
    if (out_dir / NGRAM_FILE).is_file():
        raise CheckpointError(f"out-dir {out_dir} holds an n-gram count model ({NGRAM_FILE}), which has no "
                              f"checkpoints: load it with jaxgpt.ngram.NGramModel.load")
    if not has_checkpoints(out_dir):
        raise CheckpointError(f"out-dir {out_dir} holds no checkpoints (train one with train.py --out-dir {out_dir})")
    return manager(out_dir, read_only=True)


def quiet_orbax(fn):
    """Run `fn` with absl's logger at ERROR: Orbax logs warnings for ordinary events of a reader ("read_only=True,
    setting save_interval_steps=0", "Given directory is read only") that a library user did not ask for. Our own
    warnings (a fallback to an older step) do not go through absl and stay."""
    @functools.wraps(fn)
    def quiet(*args, **kwargs):
        logger = logging.getLogger("absl")
        level = logger.level
        logger.setLevel(max(level, logging.ERROR))
        try:
            return fn(*args, **kwargs)
        finally:
            logger.setLevel(level)
    return quiet


@quiet_orbax
def latest_meta(out_dir: Path) -> dict:
    """The meta of the newest step whose meta reads back: a run's config and vocabulary, no arrays read."""
    with _open(out_dir) as mgr:
        return first_readable(mgr, newest_first(mgr), partial(read_meta, mgr), log=None)[1]


def best_step(mgr) -> int:
    """The step with the lowest val_loss (Orbax tracks it from the metrics saved with each step); a step whose
    meta no longer reads is passed over for the next best."""
    scored = sorted((mgr.metrics(s)["val_loss"], s) for s in mgr.all_steps() if mgr.metrics(s) is not None)
    if not scored:
        raise CheckpointError(f"no checkpoint in {mgr.directory} has a validation loss")
    ranked = dict.fromkeys([mgr.best_step()] + [s for _, s in scored])  # Orbax's best, then the runners-up
    return first_readable(mgr, ranked, partial(read_meta, mgr), log=None)[0]


@quiet_orbax
def load_params(out_dir: Path, step: int | None = None, best: bool = False, log=print):
    """(GPTConfig, params, CharTokenizer, meta) of a step; reads the params item only, never the optimizer state.
    Default: the newest readable step (older ones with a warning); `step` or `best` pick one and never fall back."""
    with _open(out_dir) as mgr:
        read = lambda s: restore_step(mgr, s, params_only=True)
        if step is not None and step not in mgr.all_steps():
            raise CheckpointError(f"step {step} is not in {mgr.directory}; available steps: "
                                  f"{', '.join(map(str, sorted(mgr.all_steps())))}")
        if step is not None or best:
            params, meta = read(best_step(mgr) if best else step)
        else:
            params, meta = first_readable(mgr, newest_first(mgr), read, log)[1]
    mc, _ = cfg.from_dict(meta["config"])
    return mc, params, from_meta(meta["tokenizer"], out_dir), meta


def load_checkpoint(out_dir: str | Path, step: int | None = None,
                    best: bool = False) -> tuple[cfg.GPTConfig, Params, CharTokenizer]:
    """`(config, params, tokenizer)` of the newest (or `step`, or best-by-val-loss) checkpoint under out_dir.

    Reads the params only (no optimizer state) and prints nothing; a damaged newest step is skipped with a
    UserWarning naming it."""
    mc, params, tokenizer, _ = load_params(Path(out_dir), step=step, best=best,
                                           log=lambda message: warnings.warn(message, stacklevel=3))
    return mc, params, tokenizer
