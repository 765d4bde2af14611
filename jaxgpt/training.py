"""Pure training: TrainState, the optimizer, `train_step`, and the two evaluations.

`train_step(state, data, ...) -> (state, metrics)` samples its batch on the device from the token array, takes one
AdamW step and returns the new state. `train_steps` runs several of them in one compiled call (`lax.scan`), which is
what the loop jits, with the state donated: on a CPU each call of a compiled program has a fixed cost that is large
next to a small model's step.
"""
from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import optim, sharding
from .config import GPTConfig, TrainConfig
from .data import eval_windows, sample_batch
from .model import cross_entropy, build_model, init_params, loss_fn
from .params import Params, is_layer_stacked, is_lora
from .sharding import constrain_batch


@flax.struct.dataclass
class TrainState:
    """Everything training changes, as one pytree (so it jits, vmaps, shards and checkpoints whole):
    params, the AdamW state, the step, the training key and the params' moving average. Built by `create_state`."""
    params: Any
    opt_state: Any
    step: jax.Array      # () int32, optimizer steps taken
    key: jax.Array       # (2,) uint32, the training key: batches and dropout fold in the step
    ema: Any = None      # the params' moving average when TrainConfig.ema_decay > 0: what the run evaluates


def eval_params(state: TrainState):
    """The params a run evaluates, saves as its model and samples from: the moving average when there is one."""
    return state.params if state.ema is None else state.ema


def ema_decay(tc: TrainConfig, step: jax.Array) -> jax.Array:
    """The moving average's decay at a step: min(ema_decay, (1 + t) / (10 + t)), so early steps are not
    remembered from initialisation (TensorFlow's ExponentialMovingAverage with num_updates)."""
    t = jnp.asarray(step, jnp.float32)
    return jnp.minimum(tc.ema_decay, (1.0 + t) / (10.0 + t))


def lr_schedule(tc: TrainConfig, scale: float = 1.0):
    """nanoGPT's get_lr: linear warm-up, cosine from learning_rate to min_lr at lr_decay_iters, then min_lr.
    schedule "wsd": warm-up, learning_rate until the last cooldown_frac of lr_decay_iters, then linear to min_lr.
    `scale` multiplies the whole curve (Muon's muon_lr / learning_rate)."""
    def schedule(it):
        it = jnp.asarray(it, jnp.float32)
        warm = tc.learning_rate * (it + 1) / (tc.warmup_iters + 1)
        if not tc.decay_lr:
            return scale * jnp.where(it < tc.warmup_iters, warm, tc.learning_rate)
        if tc.schedule == "wsd":
            start = max(tc.lr_decay_iters * (1.0 - tc.cooldown_frac), tc.warmup_iters)
            ratio = jnp.clip((it - start) / max(tc.lr_decay_iters - start, 1), 0.0, 1.0)
            decayed = tc.learning_rate + ratio * (tc.min_lr - tc.learning_rate)
        else:
            ratio = jnp.clip((it - tc.warmup_iters) / max(tc.lr_decay_iters - tc.warmup_iters, 1), 0.0, 1.0)
            decayed = tc.min_lr + 0.5 * (1.0 + jnp.cos(math.pi * ratio)) * (tc.learning_rate - tc.min_lr)
        return scale * jnp.where(it < tc.warmup_iters, warm, decayed)
    return schedule


def decay_mask(params):
    """Weight decay on matrices and embeddings only (nanoGPT); `blocks` leaves carry an extra leading layer axis."""
    return jax.tree_util.tree_map_with_path(lambda path, p: p.ndim - is_layer_stacked(path) >= 2, params)


def make_optimizer(mc: GPTConfig, tc: TrainConfig) -> optax.GradientTransformation:
    """Clip by global norm, then AdamW on the nanoGPT schedule (with optimizer "muon": Muon at muon_lr on the
    Blocks' matrices, AdamW on the rest; optim.py). With LoRA (lora_rank > 0) only the adapters train: every other
    update is exactly zero, so the base weights stay bit-identical."""
    if isinstance(mc, TrainConfig) and isinstance(tc, GPTConfig):
        warnings.warn("make_optimizer(tc, mc) is deprecated: pass the model config first, make_optimizer(mc, tc)",
                      DeprecationWarning, stacklevel=2)
        mc, tc = tc, mc
    adamw = optax.adamw(lr_schedule(tc), b1=tc.beta1, b2=tc.beta2, weight_decay=tc.weight_decay, mask=decay_mask)
    if tc.optimizer == "muon":
        adamw = optim.muon_adamw(lr_schedule(tc, tc.muon_lr / tc.learning_rate), tc.muon_momentum, adamw,
                                 tc.muon_ns_steps, tc.muon_ns_coeffs, tc.muon_weight_decay, tc.muon_per_head,
                                 tc.muon_ns_dtype)
    opt = optax.chain(optax.clip_by_global_norm(tc.grad_clip), adamw) if tc.grad_clip > 0 else adamw
    if mc.lora_rank:
        labels = lambda params: jax.tree_util.tree_map_with_path(is_lora, params)
        opt = optax.multi_transform({True: opt, False: optax.set_to_zero()}, labels)
    return opt


def make_keys(seed: int | jax.Array) -> dict[str, jax.Array]:
    """One root key from the seed (or the root key itself), split once into the named keys every part of a run
    draws from: {"init", "train", "eval", "sample"}, each a (2,) uint32 key.

    >>> make_keys(1337)["init"].shape
    (2,)
    """
    names = ("init", "train", "eval", "sample")
    root = jax.random.PRNGKey(seed) if isinstance(seed, int) else seed
    return dict(zip(names, jax.random.split(root, len(names))))


def create_state(mc: GPTConfig, tc: TrainConfig, params: Params | None = None,
                 key: jax.Array | None = None) -> TrainState:
    """A fresh TrainState: `params` (copied, so the caller's arrays stay valid when a step donates the state) or
    new ones from the `init` key, a fresh optimizer state, step 0 and the `train` key. The keys come from `key`
    when given (a root key: `jax.vmap(lambda k: create_state(mc, tc, key=k))(keys)` builds an ensemble), else from
    tc.seed; `key=jax.random.PRNGKey(s)` gives the same state as tc.seed = s."""
    keys = make_keys(tc.seed if key is None else key)
    params = init_params(mc, keys["init"]) if params is None else jax.tree.map(jnp.copy, params)
    return TrainState(params=params, opt_state=make_optimizer(mc, tc).init(params), step=jnp.zeros((), jnp.int32),
                      key=keys["train"], ema=jax.tree.map(jnp.copy, params) if tc.ema_decay > 0 else None)


def train_step(state: TrainState, data: jax.Array | tuple[jax.Array, jax.Array], mc: GPTConfig,
               tc: TrainConfig) -> tuple[TrainState, dict]:
    """One optimizer step on a batch drawn from `data` (N,) with fold_in(key, step), or on the loader's batch
    `data` = (x, y) (n_micro, B / n_micro, T) (the shard path); gradients averaged over
    gradient_accumulation_steps micro-batches."""
    step_key = jax.random.fold_in(state.key, state.step)
    batch_key, dropout_key = jax.random.split(step_key)
    n_micro = tc.gradient_accumulation_steps
    dropout = dropout_key if mc.dropout > 0 else None

    def micro(i):
        if isinstance(data, tuple):  # the loader's micro-batch i
            x, y = data[0][i], data[1][i]
        else:
            x, y = sample_batch(data, jax.random.fold_in(batch_key, i), batch_size=tc.batch_size // n_micro,
                                block_size=mc.block_size)
        x, y = constrain_batch(x), constrain_batch(y)  # rows over the mesh, when traced under one
        d = None if dropout is None else jax.random.fold_in(dropout, i)
        # fsdp: each weight gathered where it is used, its gradient reduce-scattered back to the shards
        return jax.value_and_grad(lambda p: loss_fn(sharding.gather_params(p), mc, x, y, d))(state.params)

    if n_micro == 1:
        loss, grads = micro(0)
    else:
        def acc(carry, i):
            loss, grads = micro(i)
            return jax.tree.map(jnp.add, carry, (loss, grads)), None
        zero = (jnp.zeros(()), jax.tree.map(jnp.zeros_like, state.params))
        (loss, grads), _ = jax.lax.scan(acc, zero, jnp.arange(n_micro))
        loss, grads = jax.tree.map(lambda g: g / n_micro, (loss, grads))

    updates, opt_state = make_optimizer(mc, tc).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema
    if ema is not None:
        d = ema_decay(tc, state.step)
        ema = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema, params)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": lr_schedule(tc)(state.step)}
    return state.replace(params=params, opt_state=opt_state, step=state.step + 1, ema=ema), metrics


def train_steps(state: TrainState, data: jax.Array | tuple[jax.Array, jax.Array], mc: GPTConfig, tc: TrainConfig,
                n_steps: int) -> tuple[TrainState, dict[str, jax.Array]]:
    """`n_steps` train_steps in one program; metrics come back stacked, (n_steps,) each. `data` is the token array
    each step samples from, or the loader's (x, y) (n_steps, n_micro, B / n_micro, T), one batch a step."""
    if isinstance(data, tuple):
        return jax.lax.scan(lambda s, xy: train_step(sharding.constrain_state(s), xy, mc, tc), state, data)
    return jax.lax.scan(lambda s, _: train_step(sharding.constrain_state(s), data, mc, tc), state, None,
                        length=n_steps)


def train_steps_jit(state: TrainState, data: jax.Array | tuple[jax.Array, jax.Array], mc: GPTConfig, tc: TrainConfig,
                    n_steps: int) -> tuple[TrainState, dict[str, jax.Array]]:
    """`train_steps` compiled: the one program the training loop runs, here for any caller.

    The state stays where it lives (its shardings in and out; a state from `create_state` on one device is run on a
    1-device mesh), `data` (N,) is replicated. The state is donated: use the returned one, the one passed in is
    deleted. Compiled once per (config, n_steps, placement). Returns (state, metrics of each step (n_steps,))."""
    return train_steps_program(state, isinstance(data, tuple))(state, data, mc, tc, n_steps)


def train_steps_program(state, batches: bool = False):
    """The jitted `train_steps` for a state where it lives: its mesh and shardings (`sharding.placement`). `state`
    may be shapes carrying shardings (jaxgpt.aot compiles it ahead of time for a TPU). `batches`: data is the
    loader's (x, y) rather than the token array."""
    mesh, shardings = sharding.placement(state)
    return sharding.jit_step(train_steps, mesh, shardings, static_argnums=(2, 3, 4), batches=batches)


@functools.partial(jax.jit, static_argnames=("mc", "batch_size", "eval_iters"))
def _estimate(params, data, key, mc: GPTConfig, batch_size: int, eval_iters: int):
    def one(_, k):
        x, y = sample_batch(data, k, batch_size=batch_size, block_size=mc.block_size)
        x, y = constrain_batch(x), constrain_batch(y)
        return None, loss_fn(params, mc, x, y)
    return jax.lax.scan(one, None, jax.random.split(key, eval_iters))[1].mean()


@functools.partial(jax.jit, static_argnames=("mc",))
def estimate_batches(params, x, y, mc: GPTConfig):
    """Mean loss over the loader's batches x, y (eval_iters, B, T) (dropout off): the shard path's estimate_loss."""
    def one(_, xy):
        return None, loss_fn(params, mc, constrain_batch(xy[0]), constrain_batch(xy[1]))
    return jax.lax.scan(one, None, (x, y))[1].mean()


def estimate_loss(params: Params, splits: dict[str, jax.Array], key: jax.Array, mc: GPTConfig, tc: TrainConfig) -> dict:
    """The lecture's estimate_loss: mean loss over eval_iters random batches of each split (dropout off), each a
    micro-batch (batch_size / gradient_accumulation_steps, as nanoGPT evaluates: what fits in memory)."""
    micro = tc.batch_size // tc.gradient_accumulation_steps
    return {name: _estimate(params, data, jax.random.fold_in(key, i), mc, micro, tc.eval_iters)
            for i, (name, data) in enumerate(splits.items())}


@functools.partial(jax.jit, static_argnames=("mc",))
def _full_sum(params, x, y, w, mc: GPTConfig):
    def one(total, xyw):
        xb, yb, wb = xyw
        logits, _ = build_model(mc).apply({"params": params}, xb)
        return total + cross_entropy(logits, yb, wb) * wb.sum(), None
    return jax.lax.scan(one, jnp.zeros(()), (x, y, w))[0]


def evaluate_full(params: Params, tokens: np.ndarray, mc: GPTConfig, *, batch_windows: int = 32) -> float:
    """Mean loss over a whole split cut into non-overlapping block_size windows: every target once, deterministic."""
    x, y, w = full_pass_windows(tokens, mc.block_size, batch_windows)
    return float(_full_sum(params, x, y, w, mc)) / float(w.sum())


def full_sum(params, x, y, w, mc: GPTConfig) -> jax.Array:
    """Summed weighted loss () of windows x, y, w (n_batches, batch_windows, T): one piece of a streamed full pass,
    left on the device so the host prepares the next piece meanwhile."""
    return _full_sum(params, x, y, w, mc)


def full_pass_windows(tokens: np.ndarray, block_size: int, batch_windows: int = 32):
    """x, y, w (n_batches, batch_windows, T): the split's windows, padded with zero-weight ones to whole batches."""
    x, y, w = eval_windows(np.asarray(tokens), block_size)
    pad = -len(x) % batch_windows
    x, y, w = (np.concatenate([a, np.zeros((pad, a.shape[1]), a.dtype)]) for a in (x, y, w))
    return tuple(a.reshape(-1, batch_windows, a.shape[1]) for a in (x, y, w))
