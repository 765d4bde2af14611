"""Configuration: the model (`GPTConfig`), the optimisation (`TrainConfig`), named presets and `--set`.

Field names follow nanoGPT where the concept is the same, so a nanoGPT config reads across.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields, replace

POS_EMBEDDINGS = ("learned", "sinusoidal", "none")
ACTIVATIONS = ("relu", "gelu")
MODELS = ("gpt", "bigram", "ngram")
DTYPES = ("float32", "bfloat16")
SHARDINGS = ("data", "fsdp")
SMOOTHINGS = ("add_alpha", "kneser_ney")


class ConfigError(ValueError):
    """A config value, key or combination that cannot work; the message names the values."""


@dataclass(frozen=True)
class GPTConfig:
    model: str = "gpt"               # "gpt"; "bigram" = the lecture's bigram.py (a vocab x vocab table); "ngram" = counts
    vocab_size: int = 65             # set from the tokenizer at run time (Tiny Shakespeare has 65 characters)
    block_size: int = 256            # context length T
    n_layer: int = 6                 # Blocks; 0 leaves embeddings -> lm_head (the lecture's first GPT step)
    n_head: int = 6
    n_embd: int = 384                # C; head size hs = n_embd // n_head
    dropout: float = 0.2             # on attention weights, attention output and feed-forward output (lecture)
    pos_embedding: str = "learned"   # learned table (lecture) | fixed sinusoidal (Vaswani et al.) | none
    ffwd: bool = True                # the feed-forward sub-layer of each Block
    ffwd_mult: int = 4               # hidden width = ffwd_mult * n_embd (lecture and nanoGPT: 4)
    residual: bool = True            # x + f(x) around both sub-layers (lecture, "residual connections")
    layer_norm: bool = True          # pre-norm LayerNorms ln1, ln2 and the final ln_f
    bias: bool = True                # bias on Linear layers and LayerNorms (lecture: True; nanoGPT char: False)
    qkv_bias: bool = False           # bias on key/query/value (lecture: False; nanoGPT: same as bias)
    activation: str = "relu"         # relu (lecture) | gelu (nanoGPT, tanh approximation)
    tie_embeddings: bool = False     # lm_head reuses the token table (nanoGPT: True)
    init_std: float = 0.02           # N(0, init_std) for Linear and Embedding weights (both lecture and nanoGPT)
    scaled_residual_init: bool = False  # projections into the residual get init_std / sqrt(2 n_layer) (GPT-2)
    dtype: str = "float32"           # compute dtype; params, softmax and loss stay float32
    scan_layers: bool = True         # nn.scan over Blocks: compile time independent of depth; same params either way
    remat: bool = False              # recompute Block activations in the backward pass (memory for compute)
    lora_rank: int = 0               # >0 adds rank-r adapters to attention and feed-forward projections
    lora_alpha: float = 8.0          # adapter output scaled by lora_alpha / lora_rank (Hu et al. 2021)
    n: int = 3                       # ngram only: order of the count model
    alpha: float = 0.05              # ngram only: add-alpha smoothing
    smoothing: str = "add_alpha"     # ngram only: add_alpha | kneser_ney (interpolated, modified; Chen & Goodman 1998)

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def validate(self) -> "GPTConfig":
        _check_choice("model", self.model, MODELS)
        _check_choice("pos_embedding", self.pos_embedding, POS_EMBEDDINGS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("dtype", self.dtype, DTYPES)
        for name in ("vocab_size", "block_size", "n_embd", "n_head", "ffwd_mult"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} {getattr(self, name)} must be >= 1")
        if self.n_layer < 0:
            raise ConfigError(f"n_layer {self.n_layer} must be >= 0")
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout {self.dropout} must be in [0, 1)")
        if self.pos_embedding == "sinusoidal" and self.n_embd % 2:
            raise ConfigError(f"sinusoidal positions need an even n_embd, got {self.n_embd}")
        if self.lora_rank < 0:
            raise ConfigError(f"lora_rank {self.lora_rank} must be >= 0")
        if self.model == "ngram" and self.n < 1:
            raise ConfigError(f"n {self.n} must be >= 1")
        _check_choice("smoothing", self.smoothing, SMOOTHINGS)
        if self.model == "ngram" and self.alpha <= 0:
            raise ConfigError(f"alpha {self.alpha} must be > 0")
        return self


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 64             # sequences per optimizer step (summed over accumulation micro-batches / devices)
    learning_rate: float = 3e-4      # peak learning rate
    decay_lr: bool = False           # cosine decay after warm-up (nanoGPT); off = constant (lecture)
    warmup_iters: int = 0            # linear warm-up from 0 to learning_rate
    lr_decay_iters: int = 5000       # cosine reaches min_lr here; independent of max_iters so resume is exact
    min_lr: float = 3e-5             # floor of the cosine (nanoGPT: learning_rate / 10)
    max_iters: int = 5000            # where training stops (never reshapes the schedule)
    weight_decay: float = 0.0        # AdamW decay, on >= 2-D parameters only (nanoGPT)
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 0.0           # global-norm clipping; 0 disables
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step (optax.MultiSteps)
    eval_interval: int = 500         # steps between estimate_loss calls
    eval_iters: int = 200            # random batches per split in estimate_loss (lecture)
    ckpt_interval: int = 500         # steps between checkpoints
    keep_checkpoints: int = 3        # latest N checkpoints kept (plus the best by val loss)
    steps_per_call: int = 10         # optimizer steps per compiled call (lax.scan over steps; CPU dispatch overhead)
    sharding: str = "data"           # data: replicate state, split batch | fsdp: also shard params on their largest dim
    seed: int = 1337                 # the lecture's torch.manual_seed(1337)
    sample_chars: int = 300          # characters printed at the end of train.py

    def validate(self) -> "TrainConfig":
        _check_choice("sharding", self.sharding, SHARDINGS)
        for name in ("batch_size", "max_iters", "eval_interval", "eval_iters", "ckpt_interval",
                     "keep_checkpoints", "steps_per_call", "gradient_accumulation_steps", "lr_decay_iters"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} {getattr(self, name)} must be >= 1")
        if self.batch_size % self.gradient_accumulation_steps:
            raise ConfigError(f"batch_size {self.batch_size} is not divisible by "
                              f"gradient_accumulation_steps {self.gradient_accumulation_steps}")
        if self.learning_rate <= 0 or self.min_lr < 0:
            raise ConfigError(f"learning_rate {self.learning_rate} must be > 0 and min_lr {self.min_lr} >= 0")
        if self.warmup_iters < 0:
            raise ConfigError(f"warmup_iters {self.warmup_iters} must be >= 0")
        return self


@dataclass(frozen=True)
class Preset:
    doc: str                         # one line: where the numbers come from
    model: GPTConfig
    train: TrainConfig = field(default_factory=TrainConfig)


_NANOGPT_MODEL = dict(bias=False, qkv_bias=False, activation="gelu", tie_embeddings=True,
                      scaled_residual_init=True)

PRESETS: dict[str, Preset] = {
    "bigram": Preset(
        "The lecture's bigram.py: a vocab x vocab table, batch 32, block 8, lr 1e-2, 3000 iterations, eval every 300.",
        GPTConfig(model="bigram", block_size=8, n_layer=0, n_head=1, n_embd=32, dropout=0.0),
        TrainConfig(batch_size=32, learning_rate=1e-2, max_iters=3000, lr_decay_iters=3000, weight_decay=0.01,
                    eval_interval=300, eval_iters=200, ckpt_interval=1000)),
    "baby": Preset(
        "nanoGPT's CPU model (4 layers, 4 heads, 128 wide, block 64) retuned for the best validation loss in 5 minutes "
        "on a 2-core CPU: batch 16, lr 2e-3 cosine to 2e-4, 3600 iterations, layers unrolled (docs/speed.md).",
        GPTConfig(block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0, scan_layers=False, **_NANOGPT_MODEL),
        TrainConfig(batch_size=16, learning_rate=2e-3, decay_lr=True, warmup_iters=100, lr_decay_iters=3600,
                    min_lr=2e-4, max_iters=3600, weight_decay=0.1, beta2=0.99, grad_clip=1.0,
                    eval_interval=600, eval_iters=10, ckpt_interval=1800)),
    "lecture": Preset(
        "The lecture's gpt.py exactly: batch 64, block 256, 384 wide, 6 heads, 6 layers, dropout 0.2, lr 3e-4, "
        "5000 iterations, eval every 500 with 200 batches.",
        GPTConfig(),
        TrainConfig(batch_size=64, learning_rate=3e-4, max_iters=5000, eval_interval=500, eval_iters=200,
                    lr_decay_iters=5000, weight_decay=0.01)),  # 0.01: torch.optim.AdamW's default, which gpt.py uses
    "shakespeare-char": Preset(
        "nanoGPT's config/train_shakespeare_char.py: 6x6x384, block 256, batch 64, dropout 0.2, lr 1e-3 cosine to "
        "1e-4, warm-up 100, beta2 0.99, weight decay 0.1, clip 1.0, no bias, 5000 iterations, eval every 250.",
        GPTConfig(dropout=0.2, **_NANOGPT_MODEL),
        TrainConfig(batch_size=64, learning_rate=1e-3, decay_lr=True, warmup_iters=100, lr_decay_iters=5000,
                    min_lr=1e-4, max_iters=5000, weight_decay=0.1, beta2=0.99, grad_clip=1.0,
                    eval_interval=250, eval_iters=200, ckpt_interval=250)),
}


# The lecture's path from the bigram table to a Transformer, one switch per step, on its intermediate setting
# (batch 32, block 8, 32 wide, 4 heads, lr 1e-3, 5000 iterations); bench/ladder.py trains them in order.
# init_std 0.1 ~ PyTorch's default Linear init at fan-in 32 (std 1/sqrt(3*32) = 0.10), which the lecture's steps use
# before gpt.py's N(0, 0.02): at 0.02 one attention head, with no residual path, starts near-uniform and ends at 2.61.
_LADDER_TRAIN = TrainConfig(batch_size=32, learning_rate=1e-3, max_iters=5000, lr_decay_iters=5000, eval_interval=500,
                            eval_iters=200, ckpt_interval=5000, steps_per_call=100)
_LADDER_MODEL = GPTConfig(block_size=8, n_embd=32, n_head=4, n_layer=0, dropout=0.0, pos_embedding="none",
                          layer_norm=False, residual=False, ffwd=False, ffwd_mult=1, init_std=0.1)
_LADDER = (
    ("ladder-bigram", "token embedding (32 wide) -> lm_head, no positions", {}),
    ("ladder-pos", "+ learned positional embeddings", dict(pos_embedding="learned")),
    ("ladder-head", "+ one self-attention head (head size 32)", dict(pos_embedding="learned", n_layer=1, n_head=1)),
    ("ladder-multihead", "multi-head attention, 4 heads x 8", dict(pos_embedding="learned", n_layer=1)),
    ("ladder-ffwd", "+ feed-forward (Linear-ReLU-Linear, 32 wide)", dict(pos_embedding="learned", n_layer=1,
                                                                         ffwd=True)),
    ("ladder-blocks", "3 Blocks of attention + feed-forward, no residual", dict(pos_embedding="learned", n_layer=3,
                                                                               ffwd=True)),
    ("ladder-residual", "+ residual connections, feed-forward 4x wide", dict(pos_embedding="learned", n_layer=3,
                                                                             ffwd=True, ffwd_mult=4, residual=True)),
    ("ladder-layernorm", "+ pre-norm LayerNorms (ln1, ln2, ln_f)", dict(pos_embedding="learned", n_layer=3, ffwd=True,
                                                                        ffwd_mult=4, residual=True, layer_norm=True)),
    ("ladder-dropout", "+ dropout 0.2", dict(pos_embedding="learned", n_layer=3, ffwd=True, ffwd_mult=4,
                                             residual=True, layer_norm=True, dropout=0.2)),
)
LADDER = tuple(name for name, _, _ in _LADDER) + ("lecture",)  # the last step: scaled up
PRESETS.update({name: Preset(f"Lecture ladder step: {doc}; batch 32, block 8, 32 wide, lr 1e-3, 5000 iterations.",
                             replace(_LADDER_MODEL, **kw), _LADDER_TRAIN) for name, doc, kw in _LADDER})
PRESETS["babygpt"] = Preset(
    "BabyGPT's size (~24k parameters): 2 layers, 4 heads, 32 wide, block 64, feed-forward 2x, lr 3e-3, 5000 iterations.",
    GPTConfig(block_size=64, n_layer=2, n_head=4, n_embd=32, ffwd_mult=2, dropout=0.0),
    TrainConfig(batch_size=32, learning_rate=3e-3, decay_lr=True, warmup_iters=100, lr_decay_iters=5000, min_lr=3e-4,
                max_iters=5000, eval_interval=500, eval_iters=200, ckpt_interval=1000, steps_per_call=50))
PRESETS["ngram"] = Preset(
    "Count-based 7-gram with interpolated modified Kneser-Ney smoothing (--set smoothing=add_alpha alpha=0.05 for "
    "add-alpha); trains by counting, no gradient steps.",
    GPTConfig(model="ngram", block_size=8, n=7, smoothing="kneser_ney", n_layer=0, n_head=1, n_embd=1, dropout=0.0),
    TrainConfig(max_iters=1, eval_interval=1, eval_iters=1, ckpt_interval=1))


def _check_choice(name: str, value, valid) -> None:
    if value not in valid:
        raise ConfigError(f"{name} {value!r} is not one of {', '.join(map(repr, valid))}")


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def _parse_value(key: str, text: str, kind: type):
    if kind is bool:
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ConfigError(f"{key}={text!r}: expected a bool (true/false)")
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"{key}={text!r}: expected {kind.__name__}") from None


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def field_types(cls) -> dict[str, type]:
    return {f.name: _TYPES[f.type] if isinstance(f.type, str) else f.type for f in fields(cls)}


def apply_overrides(model: GPTConfig, train: TrainConfig, overrides: list[str] | dict) -> tuple[GPTConfig, TrainConfig]:
    """Apply `key=value` strings (or a dict of already-typed values) to whichever config owns the key."""
    mtypes, ttypes = field_types(GPTConfig), field_types(TrainConfig)
    items = overrides.items() if isinstance(overrides, dict) else [_split(o) for o in overrides]
    mset, tset = {}, {}
    for key, value in items:
        if key in mtypes:
            target, kind = mset, mtypes[key]
        elif key in ttypes:
            target, kind = tset, ttypes[key]
        else:
            raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(mtypes | ttypes))}")
        if isinstance(value, str) and kind is not str:
            value = _parse_value(key, value, kind)
        elif kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif not isinstance(value, kind):
            raise ConfigError(f"{key}={value!r}: expected {kind.__name__}")
        target[key] = value
    return replace(model, **mset), replace(train, **tset)


def _split(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r} is not of the form key=value")
    return key.strip(), value.strip()


def to_dict(model: GPTConfig, train: TrainConfig) -> dict:
    return {"model": dataclasses.asdict(model), "train": dataclasses.asdict(train)}


def from_dict(d: dict) -> tuple[GPTConfig, TrainConfig]:
    """Inverse of `to_dict`; unknown keys (from a newer version) are an error, missing ones take defaults."""
    model, train = apply_overrides(GPTConfig(), TrainConfig(), {**d["model"], **d["train"]})
    return model.validate(), train.validate()


def to_json(model: GPTConfig, train: TrainConfig) -> str:
    return json.dumps(to_dict(model, train), indent=2, sort_keys=True)
