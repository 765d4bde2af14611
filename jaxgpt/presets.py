"""Named presets: each a one-line source, a model config and a training config (`train.py --preset NAME`).

The lecture's and nanoGPT's presets stay faithful to their sources; new recipes arrive as new presets.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .config import GPTConfig, NGramConfig, TrainConfig, changed_fields
from .errors import ConfigError


@dataclass(frozen=True)
class Preset:
    """What `get_preset(name)` returns: a one-line source, the model config and the training config."""
    doc: str                         # one line: where the numbers come from
    model: GPTConfig | NGramConfig
    train: TrainConfig = field(default_factory=TrainConfig)


_NANOGPT_MODEL = dict(bias=False, qkv_bias=False, activation="gelu", tie_embeddings=True,
                      scaled_residual_init=True)

PRESETS: dict[str, Preset] = {
    "bigram": Preset(
        "The lecture's bigram.py: a vocab x vocab table, batch 32, block 8, lr 1e-2, 3000 iterations, eval every 300.",
        GPTConfig(model="bigram", block_size=8, n_layer=0, n_head=1, n_embd=32, dropout=0.0),
        TrainConfig(batch_size=32, learning_rate=1e-2, max_iters=3000, lr_decay_iters=3000, weight_decay=0.01,
                    eval_interval=300, eval_iters=200, ckpt_interval=1000)),
    "nanogpt-cpu": Preset(
        "nanoGPT's CPU model (4 layers, 4 heads, 128 wide, block 64) with AdamW, retuned for 5 minutes on a 2-core "
        "CPU: batch 16, lr 2e-3 cosine to 2e-4, 3600 iterations, layers unrolled; `baby` until 2026-12 "
        "(docs/speed.md).",
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
                          layer_norm=False, residual=False, ffwd=False, ffwd_mult=1, proj=False, init_std=0.1)
_LADDER = (
    ("ladder-bigram", "token embedding (32 wide) -> lm_head, no positions", {}),
    ("ladder-pos", "+ learned positional embeddings", dict(pos_embedding="learned")),
    ("ladder-head", "+ one self-attention head (head size 32)", dict(pos_embedding="learned", n_layer=1, n_head=1)),
    ("ladder-multihead", "multi-head attention, 4 heads x 8", dict(pos_embedding="learned", n_layer=1)),
    ("ladder-ffwd", "+ feed-forward (Linear-ReLU, 32 wide)", dict(pos_embedding="learned", n_layer=1, ffwd=True)),
    ("ladder-blocks", "3 Blocks of attention + feed-forward, no residual", dict(pos_embedding="learned", n_layer=3,
                                                                               ffwd=True)),
    ("ladder-residual", "+ residual connections with projections, feed-forward 4x wide",
     dict(pos_embedding="learned", n_layer=3, ffwd=True, ffwd_mult=4, residual=True, proj=True)),
    ("ladder-layernorm", "+ pre-norm LayerNorms (ln1, ln2, ln_f)", dict(pos_embedding="learned", n_layer=3, ffwd=True,
                                                                        ffwd_mult=4, residual=True, proj=True,
                                                                        layer_norm=True)),
    ("ladder-dropout", "+ dropout 0.2", dict(pos_embedding="learned", n_layer=3, ffwd=True, ffwd_mult=4,
                                             residual=True, proj=True, layer_norm=True, dropout=0.2)),
)
LADDER = tuple(name for name, _, _ in _LADDER) + ("lecture",)  # the last step: scaled up
PRESETS.update({name: Preset(f"Lecture ladder step: {doc}; batch 32, block 8, 32 wide, lr 1e-3, 5000 iterations.",
                             replace(_LADDER_MODEL, **kw), _LADDER_TRAIN) for name, doc, kw in _LADDER})
PRESETS["babygpt"] = Preset(
    "BabyGPT's size (~24k parameters): 2 layers, 4 heads, 32 wide, block 64, feed-forward 2x, lr 3e-3, 5000 iterations.",
    GPTConfig(block_size=64, n_layer=2, n_head=4, n_embd=32, ffwd_mult=2, dropout=0.0),
    TrainConfig(batch_size=32, learning_rate=3e-3, decay_lr=True, warmup_iters=100, lr_decay_iters=5000, min_lr=3e-4,
                max_iters=5000, eval_interval=500, eval_iters=200, ckpt_interval=1000, steps_per_call=50))
# The character model (the lecture's unit): nanoGPT's CPU model with a modern recipe; each switch's number is in
# docs/speed.md. shakespeare-bpe, the default, is this model on subword tokens with the recipe it was measured with.
_MODERN = dict(pos_embedding="rope", norm="rms", qk_norm=True, activation="relu2", zero_init_proj=True)
PRESETS["baby"] = Preset(
    "The character model (the lecture's unit: a token per character, 65 in Tiny Shakespeare): nanogpt-cpu's model "
    "on sequences of 128 at batch 8 (the same 1024 tokens a step), its cosine schedule and 3600 steps, with Muon "
    "(lr 0.0125, momentum 0.9, three Polar Express steps from bf16 products) on the Block matrices, rotary "
    "positions, RMSNorm, QK-norm, ReLU^2, zero-initialised projections, an untied head and a moving average of the "
    "params as the model (ema_decay 0.999): val loss 1.4795 in 3600 steps (Intel Xeon, 2026-12-08; 1.48125 with "
    "float32 products, 1.5095 at block 64 and batch 16, "
    "nanogpt-cpu's recipe 1.6358 in the same tokens, docs/speed.md).",
    replace(PRESETS["nanogpt-cpu"].model, **_MODERN, tie_embeddings=False, block_size=128),  # 128: -0.016 at B, 3 seeds
    replace(PRESETS["nanogpt-cpu"].train, batch_size=8, optimizer="muon", muon_lr=0.0125, muon_momentum=0.9,
            muon_ns_coeffs="polar_express", muon_ns_steps=3, muon_ns_dtype="bfloat16", ema_decay=0.999))
# nanoGPT's config/train_gpt2.py on its model.py defaults. Its step: 40 micro-steps of 12 sequences (5 on each of
# 8 GPUs) = 480 x 1024 tokens. Here the global batch of 480 in 20 micro-batches of 24, 3 a chip on 8 chips: nanoGPT's
# 12 a GPU rely on flash attention, and this model's (B, H, T, T) weights at 6 a chip fill a v5e's 16 GB
# (docs/scaling.md). bf16 compute everywhere; on a CPU --set dtype=float32 is no slower.
PRESETS["gpt2-124m"] = Preset(
    "nanoGPT's config/train_gpt2.py: GPT-2 124M (12x12x768, block 1024, vocab 50257 padded to 50304), bf16, "
    "491,520 tokens a step (480 x 1024, 20 micro-batches), lr 6e-4 cosine to 6e-5 over 600k steps, warm-up 2000.",
    GPTConfig(vocab_size=50257, vocab_multiple=64, block_size=1024, n_layer=12, n_head=12, n_embd=768, dropout=0.0,
              dtype="bfloat16", **{**_NANOGPT_MODEL, "activation": "gelu_exact"}),  # nanoGPT's nn.GELU(): erf
    TrainConfig(batch_size=480, gradient_accumulation_steps=20, learning_rate=6e-4, decay_lr=True, warmup_iters=2000,
                lr_decay_iters=600_000, min_lr=6e-5, max_iters=600_000, weight_decay=0.1, beta2=0.95, grad_clip=1.0,
                eval_interval=1000, eval_iters=200, ckpt_interval=1000))
# The default (DEFAULT_PRESET): fewer bits per character than baby in the same time (bench/RESULTS.md)
PRESETS["shakespeare-bpe"] = Preset(
    "The default: baby's model at block 64 on Tiny Shakespeare as subword tokens, a byte-level BPE of 1024 tokens "
    "trained on the first 90% of the characters (nanoGPT's data/shakespeare split), with the recipe it was measured "
    "with: batch 16, 3600 steps, Muon lr 0.05 (baby's 0.0125 and untied head cost +0.020 bits/char here), "
    "momentum 0.95, 5 quintic Newton-Schulz steps, tied head, baby's moving average of the params (ema_decay 0.999: "
    "2.1322 bits/char in 3600 steps against 2.1620); --tokenizer PATH/tokenizer.json for GPT-2's BPE.",
    replace(PRESETS["nanogpt-cpu"].model, **_MODERN, tie_embeddings=True),
    replace(PRESETS["nanogpt-cpu"].train, optimizer="muon", muon_lr=0.05, tokenizer="bpe", bpe_vocab_size=1024,
            ema_decay=0.999))
PRESETS["ngram"] = Preset(
    "Count-based 7-gram with interpolated modified Kneser-Ney smoothing (--set smoothing=add_alpha alpha=0.05 for "
    "add-alpha); trains by counting, no gradient steps.",
    NGramConfig(n=7, smoothing="kneser_ney"),
    TrainConfig(max_iters=1, eval_interval=1, eval_iters=1, ckpt_interval=1))


DEFAULT_PRESET = "shakespeare-bpe"  # what `train.py` trains without --preset


def get_preset(name: str) -> Preset:
    """The preset called `name` (`PRESETS` lists them); a `Preset` holds `.doc`, `.model` and `.train`."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def differences(name: str, model, train: TrainConfig) -> list[str]:
    """`key=value` for each field where (model, train) differ from preset `name` (from the defaults when `name` is
    no preset, e.g. an imported run): what a run prints instead of its whole config."""

    base = PRESETS.get(name) or Preset("", GPTConfig())
    return [f"{k}={getattr(new, k)!r}" for new, old in ((model, base.model), (train, base.train))
            if type(new) is type(old) for k in changed_fields(new, old)]
