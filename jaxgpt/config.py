"""Configuration: the model (`GPTConfig`, or `NGramConfig` for count models), the optimisation (`TrainConfig`),
`--set` overrides and the JSON form a run records. Named presets are in `presets.py`.

Field names follow nanoGPT where the concept is the same, so a nanoGPT config reads across. Every config is a
frozen dataclass checked when it is built (`dataclasses.replace` builds a new one, so it is checked too).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields, replace
from typing import ClassVar

from .checks import (_Checked, _check_at_least, _check_choice, _check_range, _parse_value, documented,  # noqa: F401
                     field_types)
from .errors import ConfigError

POS_EMBEDDINGS = ("learned", "sinusoidal", "rope", "none")
ACTIVATIONS = ("relu", "gelu", "gelu_exact", "relu2")
NORMS = ("layer", "rms")
OPTIMIZERS = ("adamw", "muon")
SCHEDULES = ("cosine", "wsd")
NS_COEFFS = ("quintic", "polar_express")
MODELS = ("gpt", "bigram")
DTYPES = ("float32", "bfloat16")
SHARDINGS = ("data", "fsdp")
SMOOTHINGS = ("add_alpha", "kneser_ney")
TOKENIZERS = ("char", "bpe", "file")  # jaxgpt.data.tokenizers


@documented
@dataclass(frozen=True)
class GPTConfig(_Checked):
    """The model: sizes and architecture switches (defaults = the lecture's gpt.py). Frozen and checked when built:
    GPTConfig(n_embd=30, n_head=4) raises ConfigError. `GPTConfig(n_layer=2, n_embd=64).head_size == 16`."""
    model: str = "gpt"               # "gpt"; "bigram" = the lecture's bigram.py (a vocab x vocab table)
    vocab_size: int = 65             # set from the tokenizer at run time (Tiny Shakespeare has 65 characters)
    vocab_multiple: int = 1          # embedding table and lm_head padded to a multiple of this, logits cut back to
                                     # vocab_size (nanoGPT's GPT-2: 50257 -> 50304 = 64 x 786, "for efficiency")
    block_size: int = 256            # context length T
    n_layer: int = 6                 # Blocks; 0 leaves embeddings -> lm_head (the lecture's first GPT step)
    n_head: int = 6                  # attention heads per Block, each n_embd // n_head wide
    n_embd: int = 384                # C; head size hs = n_embd // n_head
    dropout: float = 0.2             # on attention weights, attention output and feed-forward output (lecture)
    pos_embedding: str = "learned"   # learned table (lecture) | fixed sinusoidal (Vaswani et al.) | rope: rotary q/k
                                     # (Su et al. 2021, layers.apply_rope) | none
    ffwd: bool = True                # the feed-forward sub-layer of each Block
    ffwd_mult: int = 4               # hidden width = ffwd_mult * n_embd (lecture and nanoGPT: 4)
    residual: bool = True            # x + f(x) around both sub-layers (lecture, "residual connections")
    proj: bool = True                # attention's output Linear and the feed-forward's second one; the lecture adds
                                     # both with the residual (before it: heads concatenated, ffwd Linear -> ReLU)
    layer_norm: bool = True          # pre-norm LayerNorms ln1, ln2 and the final ln_f
    norm: str = "layer"              # layer: LayerNorm (lecture) | rms: RMSNorm with a gain (Zhang & Sennrich 2019)
    qk_norm: bool = False            # RMS-normalise each head's q, k (Henry et al. 2020; modded-nanogpt)
    attn_scale: float = 0.0          # > 0: logits are q.k x this, not q.k / sqrt(hs); with qk_norm q.k <= hs, so
                                     # 1/sqrt(hs) caps them at sqrt(hs) (modded-nanogpt: 0.12 at hs 128)
    bias: bool = True                # bias on Linear layers and LayerNorms (lecture: True; nanoGPT char: False)
    qkv_bias: bool = False           # bias on key/query/value (lecture: False; nanoGPT: same as bias)
    activation: str = "relu"         # relu (lecture) | gelu (GPT-2, tanh approximation) | gelu_exact (erf: nanoGPT's
                                     # nn.GELU()) | relu2 (Primer, So et al. 2021)
    tie_embeddings: bool = False     # lm_head reuses the token table (nanoGPT: True)
    init_std: float = 0.02           # N(0, init_std) for Linear and Embedding weights (both lecture and nanoGPT)
    scaled_residual_init: bool = False  # projections into the residual get init_std / sqrt(2 n_layer) (GPT-2)
    zero_init_proj: bool = False     # projections into the residual start at zero: each Block starts as the identity
                                     # (modded-nanogpt; Zhang et al. 2019 "Fixup")
    logit_softcap: float = 0.0       # > 0: logits = cap * tanh(logits / cap) (Gemma 2; modded-nanogpt uses 15-30)
    dtype: str = "float32"           # compute dtype; params, softmax and loss stay float32
    scan_layers: bool = True         # nn.scan over Blocks: compile time independent of depth; same params either way
    remat: bool = False              # recompute Block activations in the backward pass (memory for compute)
    lora_rank: int = 0               # >0 adds rank-r adapters to attention and feed-forward projections
    lora_alpha: float = 8.0          # adapter output scaled by lora_alpha / lora_rank (Hu et al. 2021)
    unet_skips: bool = False         # U-net: Block i's output, i < n_layer // 2, is added into Block n_layer-1-i's
                                     # input times a learned scalar initialised to 1.0 (modded-nanogpt; levers.py)
    value_embeds: int = 0            # k token tables (vocab x n_embd, N(0, init_std)) added to the values v of
                                     # Blocks i and n_layer-1-i, i < k: v = v + ve (modded-nanogpt; levers.py)

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding table and lm_head: vocab_size rounded up to a multiple of vocab_multiple."""
        return -(-self.vocab_size // self.vocab_multiple) * self.vocab_multiple

    def _check(self) -> None:
        _check_choice("model", self.model, MODELS)
        _check_choice("pos_embedding", self.pos_embedding, POS_EMBEDDINGS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("norm", self.norm, NORMS)
        _check_choice("dtype", self.dtype, DTYPES)
        _check_at_least(self, 1, "vocab_size", "vocab_multiple", "block_size", "n_embd", "n_head", "ffwd_mult")
        _check_at_least(self, 0, "n_layer", "lora_rank", "value_embeds")
        if (self.unet_skips or self.value_embeds) and self.model != "gpt":
            raise ConfigError(f"unet_skips={self.unet_skips} and value_embeds={self.value_embeds} need model 'gpt' "
                              f"(got {self.model!r}): they act on Blocks")
        if self.unet_skips and self.n_layer < 2:
            raise ConfigError(f"unet_skips needs n_layer >= 2 (a first half to skip from), got n_layer {self.n_layer}")
        if 2 * self.value_embeds > self.n_layer:
            raise ConfigError(f"value_embeds {self.value_embeds} needs 2 x {self.value_embeds} <= n_layer, got "
                              f"n_layer {self.n_layer} (the first and the last value_embeds Blocks share the tables)")
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if not self.proj and self.ffwd_mult != 1:
            raise ConfigError(f"proj=False needs ffwd_mult 1, got {self.ffwd_mult} (without its second Linear the "
                              f"feed-forward's output is its hidden layer, which must be n_embd wide)")
        _check_range(self, "dropout", 0.0, 1.0, open_high=True)
        _check_range(self, "init_std", 0.0, open_low=True)
        _check_range(self, "lora_alpha", 0.0, open_low=True)
        if self.pos_embedding == "sinusoidal" and self.n_embd % 2:
            raise ConfigError(f"sinusoidal positions need an even n_embd, got {self.n_embd}")
        if self.pos_embedding == "rope" and self.head_size % 2:
            raise ConfigError(f"rope positions need an even head size, got n_embd {self.n_embd} / n_head {self.n_head}")
        if self.logit_softcap < 0:
            raise ConfigError(f"logit_softcap {self.logit_softcap} must be >= 0 (0 disables it)")
        if self.attn_scale < 0:
            raise ConfigError(f"attn_scale {self.attn_scale} must be >= 0 (0: 1/sqrt(head size))")


@documented
@dataclass(frozen=True)
class NGramConfig(_Checked):
    """A count model (`jaxgpt.ngram`): no network, no gradient steps; `train.py --preset ngram` counts."""
    model: ClassVar[str] = "ngram"   # what `to_dict` records, so a run's config says which kind it is
    n: int = 3                       # order: each character is predicted from the n - 1 before it
    smoothing: str = "add_alpha"     # add_alpha | kneser_ney (interpolated, modified; Chen & Goodman 1998)
    alpha: float = 0.05              # add-alpha smoothing (add_alpha only)
    vocab_size: int = 65             # set from the tokenizer at run time

    @property
    def block_size(self) -> int:
        """The context the model reads: what the train/validation split must hold at least once."""
        return self.n - 1

    def _check(self) -> None:
        _check_choice("smoothing", self.smoothing, SMOOTHINGS)
        _check_at_least(self, 1, "n", "vocab_size")
        if self.alpha <= 0:
            raise ConfigError(f"alpha {self.alpha} must be > 0")


@documented
@dataclass(frozen=True)
class TrainConfig(_Checked):
    """The optimisation and the run around it: batch, AdamW and its schedule, evaluation and checkpoint intervals,
    the seed. Frozen and checked when built (ConfigError naming the value)."""
    batch_size: int = 64             # sequences per optimizer step (summed over accumulation micro-batches / devices)
    learning_rate: float = 3e-4      # peak learning rate
    decay_lr: bool = False           # decay after warm-up (the shape is `schedule`); off = constant (lecture)
    schedule: str = "cosine"         # cosine to min_lr at lr_decay_iters (nanoGPT) | wsd: warm-up, stable, then linear
                                     # to min_lr over the last cooldown_frac of lr_decay_iters (Hägele et al. 2024)
    cooldown_frac: float = 0.2       # wsd: the decaying share of lr_decay_iters (modded-nanogpt's cooldown_frac)
    warmup_iters: int = 0            # linear warm-up from 0 to learning_rate
    lr_decay_iters: int = 5000       # cosine reaches min_lr here; independent of max_iters so resume is exact
    min_lr: float = 3e-5             # floor of the cosine (nanoGPT: learning_rate / 10)
    max_iters: int = 5000            # where training stops (never reshapes the schedule)
    weight_decay: float = 0.0        # AdamW decay, on >= 2-D parameters only (nanoGPT)
    beta1: float = 0.9               # AdamW first-moment decay (torch and optax default)
    beta2: float = 0.999             # AdamW second-moment decay (nanoGPT's small models: 0.99)
    grad_clip: float = 0.0           # global-norm clipping; 0 disables
    optimizer: str = "adamw"         # adamw | muon: Muon (Jordan et al. 2024) on the Blocks' matrices, AdamW at
                                     # learning_rate on embeddings, head, gains and biases (optim.py)
    muon_lr: float = 0.05            # Muon's peak learning rate, same schedule shape (modded-nanogpt: 0.05)
    muon_momentum: float = 0.95      # Muon's Nesterov momentum (modded-nanogpt: 0.95)
    muon_ns_steps: int = 5           # Newton-Schulz steps per Muon update (modded-nanogpt, optax: 5)
    muon_ns_coeffs: str = "quintic"  # quintic: (3.4445, -4.775, 2.0315) every step (Jordan 2024) | polar_express: the
                                     # first muon_ns_steps of Amsel et al. 2025's five per-step sets (modded-nanogpt)
    muon_weight_decay: float = 0.0   # decoupled decay on Muon's matrices, muon lr x this x W a step (Liu et al. 2025)
    muon_per_head: bool = False      # Newton-Schulz on each head's q, k, v and proj matrix (C x hs), not the C x C whole
    muon_ns_dtype: str = "float32"   # Newton-Schulz's products: float32 | bfloat16 inputs summed in f32 (modded-nanogpt
                                     # runs it in bf16; 0.61x its f32 time on baby's leaves, Intel class, docs/speed.md)
    ema_decay: float = 0.0           # > 0: runs evaluate, save and sample a moving average of the params, each step
                                     # e <- d e + (1 - d) params, d = min(ema_decay, (1 + t) / (10 + t)) (Polyak
                                     # averaging; TensorFlow's num_updates rule, about the last t / 9 steps)
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step (a scan inside the step)
    eval_interval: int = 500         # steps between estimate_loss calls
    eval_iters: int = 200            # random batches per split in estimate_loss (lecture)
    ckpt_interval: int = 500         # steps between checkpoints
    keep_checkpoints: int = 3        # latest N checkpoints kept (plus the best by val loss)
    steps_per_call: int = 10         # optimizer steps per compiled call (lax.scan over steps; CPU dispatch overhead)
    sharding: str = "data"           # data: replicate state, split batch | fsdp: also shard params on their largest dim
    seed: int = 1337                 # the lecture's torch.manual_seed(1337)
    sample_chars: int = 300          # characters printed at the end of train.py
    full_eval_tokens: int = 0        # targets the final full validation pass scores at most; 0: all of val
    tokenizer: str = "char"          # char: the lecture's sorted characters | bpe: byte-level BPE trained on the train
                                     # split | file: train.py --tokenizer PATH (a Hugging Face tokenizer.json)
    bpe_vocab_size: int = 2048       # bpe: tokens to train, 256 bytes included (GPT-2: 50257)

    def _check(self) -> None:
        _check_choice("sharding", self.sharding, SHARDINGS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("muon_ns_coeffs", self.muon_ns_coeffs, NS_COEFFS)
        _check_choice("muon_ns_dtype", self.muon_ns_dtype, DTYPES)
        if not 1 <= self.muon_ns_steps <= (5 if self.muon_ns_coeffs == "polar_express" else 100):
            raise ConfigError(f"muon_ns_steps {self.muon_ns_steps} must be in [1, 100] (polar_express: [1, 5], the "
                              f"sets it has)")
        _check_choice("tokenizer", self.tokenizer, TOKENIZERS)
        if not 256 <= self.bpe_vocab_size <= 2 ** 32:
            raise ConfigError(f"bpe_vocab_size {self.bpe_vocab_size} must be in [256, 4294967296]: at least the byte "
                              f"alphabet (every byte is a token) and ids that fit uint32")
        if not 0.0 < self.cooldown_frac <= 1.0 or self.muon_lr <= 0 or not 0.0 <= self.muon_momentum < 1.0:
            raise ConfigError(f"cooldown_frac {self.cooldown_frac} must be in (0, 1], muon_lr {self.muon_lr} > 0 and "
                              f"muon_momentum {self.muon_momentum} in [0, 1)")
        if not 0.0 <= self.muon_weight_decay < 1.0 / self.muon_lr:
            raise ConfigError(f"muon_weight_decay {self.muon_weight_decay} must be in [0, 1 / muon_lr = "
                              f"{1.0 / self.muon_lr:g}): a step multiplies the matrices by 1 - muon_lr x it")
        _check_at_least(self, 1, "batch_size", "max_iters", "eval_interval", "eval_iters", "ckpt_interval",
                        "keep_checkpoints", "steps_per_call", "gradient_accumulation_steps", "lr_decay_iters")
        if self.batch_size % self.gradient_accumulation_steps:
            raise ConfigError(f"batch_size {self.batch_size} is not divisible by "
                              f"gradient_accumulation_steps {self.gradient_accumulation_steps}")
        if self.learning_rate <= 0 or self.min_lr < 0:
            raise ConfigError(f"learning_rate {self.learning_rate} must be > 0 and min_lr {self.min_lr} >= 0")
        _check_at_least(self, 0, "warmup_iters", "sample_chars", "seed", "full_eval_tokens")
        _check_range(self, "beta1", 0.0, 1.0, open_high=True)
        _check_range(self, "beta2", 0.0, 1.0, open_high=True)
        _check_range(self, "weight_decay", 0.0)
        _check_range(self, "grad_clip", 0.0)
        _check_range(self, "ema_decay", 0.0, 1.0, open_high=True)


# ---------------------------------------------------------------------------------------------------- overrides

def apply_overrides(model: GPTConfig | NGramConfig, train: TrainConfig, overrides: list[str] | dict) -> tuple:
    """Apply `key=value` strings (or a dict of strings or typed values) to whichever config owns the key.

    Returns new (model, train) configs, each checked as it is built."""
    mtypes, ttypes = field_types(type(model)), field_types(TrainConfig)
    items = overrides.items() if isinstance(overrides, dict) else [split_override(o) for o in overrides]
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
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{key}={value!r}: expected {kind.__name__}")
        target[key] = value
    return replace(model, **mset), replace(train, **tset)


def split_override(item: str) -> tuple[str, str]:
    """`"key=value"` -> (key, value), both stripped."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r} is not of the form key=value")
    return key.strip(), value.strip()


def parse_sets(items: list[str]) -> dict[str, str]:
    """`--set` items as {key: text}; `vocab_size` is refused because the data's tokenizer decides it."""
    sets = dict(split_override(item) for item in items)
    if "vocab_size" in sets:
        raise ConfigError(f"vocab_size={sets['vocab_size']} cannot be set: it is the number of distinct characters "
                          f"in the data, which the run's tokenizer counts (a BPE's: --set tokenizer=bpe "
                          f"bpe_vocab_size=N)")
    return sets


def changed_fields(a, b) -> list[str]:
    """Names of the fields where two configs of one type differ."""
    return [f.name for f in fields(a) if getattr(a, f.name) != getattr(b, f.name)]


# ---------------------------------------------------------------------------------------------------- JSON form

_V0_GPT_ONLY = {"n", "alpha", "smoothing"}  # n-gram fields that GPTConfig carried before NGramConfig existed


def to_dict(model, train: TrainConfig) -> dict:
    return {"model": {"model": model.model, **dataclasses.asdict(model)}, "train": dataclasses.asdict(train)}


def from_dict(d: dict) -> tuple:
    """Inverse of `to_dict`; unknown keys (from a newer version) are an error, missing ones take defaults.

    Also reads what earlier versions wrote: n-gram runs as a GPTConfig with model "ngram" (its GPT fields are
    ignored) and GPT runs with the n-gram fields."""
    model = dict(d["model"])
    if model.pop("model", "gpt") == "ngram":
        known = {f.name for f in fields(NGramConfig)}
        legacy = {f.name for f in fields(GPTConfig)} - known
        base, model = NGramConfig(), {k: v for k, v in model.items() if k not in legacy}
    else:
        base, model = GPTConfig(model=d["model"].get("model", "gpt")), {k: v for k, v in model.items()
                                                                          if k not in _V0_GPT_ONLY}
    return apply_overrides(base, TrainConfig(), {**model, **d["train"]})


def to_json(model, train: TrainConfig) -> str:
    return json.dumps(to_dict(model, train), indent=2, sort_keys=True)
