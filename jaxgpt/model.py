"""The lecture's models in flax.linen: BigramLanguageModel, Head, MultiHeadAttention, FeedForward, Block, GPTLanguageModel.

One parameter layout whatever the switches: key/query/value live in one `qkv` kernel (C, 3, H, hs), the
attention output projection is (H, hs, C), and the Blocks are stacked on a leading n_layer axis (`blocks`).
`scan_layers` only decides whether that stack is run as a loop or unrolled.

Both models share one interface: `__call__(idx, targets=None, deterministic=True) -> (logits, loss)` as in the
lecture, and `decode(idx, cache, pos) -> (logits, cache)` which feeds tokens at absolute positions
pos..pos+T-1 through a per-layer key/value cache of block_size slots (see `init_cache`).
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from .config import GPTConfig
from .layers import apply_rope, cross_entropy, matmul, relu2, rms_norm, sinusoidal_positions, soft_cap
from .levers import scan_blocks
from .params import Params

Cache = tuple[jax.Array, jax.Array] | None  # (k, v): (L, B, H, block_size, hs), or one layer's (B, H, block_size, hs)


class Dense(nn.Module):
    """x @ kernel + bias contracting the last `n_in` axes of x; kernel shape = in_shape + features.

    With `lora_rank` > 0 it also holds a low-rank adapter lora_a @ lora_b (B starts at zero, so an adapted
    model starts equal to its base) scaled by lora_alpha / lora_rank.
    """
    features: tuple[int, ...]
    n_in: int = 1
    use_bias: bool = True
    std: float = 0.02
    dtype: str = "float32"
    lora_rank: int = 0
    lora_alpha: float = 8.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_shape, lead = x.shape[-self.n_in:], x.shape[:-self.n_in]
        d_in, d_out = math.prod(in_shape), math.prod(self.features)
        kernel = self.param("kernel", nn.initializers.normal(self.std), in_shape + tuple(self.features))
        x2 = x.reshape(lead + (d_in,)).astype(self.dtype)
        y = matmul(x2, kernel.reshape(d_in, d_out).astype(self.dtype))
        if self.lora_rank:
            a = self.param("lora_a", nn.initializers.normal(1 / math.sqrt(d_in)), (d_in, self.lora_rank))
            b = self.param("lora_b", nn.initializers.zeros, (self.lora_rank, d_out))
            y = y + (x2 @ a.astype(self.dtype)) @ b.astype(self.dtype) * (self.lora_alpha / self.lora_rank)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, tuple(self.features)).reshape(d_out).astype(self.dtype)
        return y.reshape(lead + tuple(self.features))


def attention(q: jax.Array, k: jax.Array, v: jax.Array, dropout: Callable[[jax.Array], jax.Array],
              pos: jax.Array | int = 0, causal: bool = True, kv_heads_first: bool = False, scale=0.0) -> jax.Array:
    """Scaled dot-product attention over all heads at once; the one attention path of the package.

    q (B, Tq, H, hs) sits at absolute positions pos..pos+Tq-1; k, v (B, Tk, H, hs) at 0..Tk-1, or (B, H, Tk, hs)
    with `kv_heads_first` (the cache's layout). With `causal`, query i sees keys j <= pos + i (the lecture's tril
    mask when pos = 0 and Tq = Tk). The logits are q.k times `scale`, 1/sqrt(hs) when it is 0 (GPTConfig.attn_scale).
    """
    kv, Tk = ("bhkd", k.shape[2]) if kv_heads_first else ("bkhd", k.shape[1])
    wei = jnp.einsum(f"bqhd,{kv}->bhqk", q, k).astype(jnp.float32) * (scale or q.shape[-1] ** -0.5)  # (B, H, Tq, Tk)
    if causal:
        mask = jnp.arange(Tk)[None, :] <= (pos + jnp.arange(q.shape[1]))[:, None]  # (Tq, Tk)
        wei = jnp.where(mask, wei, -jnp.inf)
    wei = dropout(jax.nn.softmax(wei, axis=-1))
    return jnp.einsum(f"bhqk,{kv}->bqhd", wei.astype(v.dtype), v)  # (B, Tq, H, hs)


def prepare_qk(config: GPTConfig, q: jax.Array, k: jax.Array, pos=0) -> tuple[jax.Array, jax.Array]:
    """QK-norm and rotary positions (when switched on) of q, k (B, T, H, hs), both at positions pos..pos+T-1;
    rotated at absolute positions, so keys cached at theirs stay valid."""
    if config.qk_norm:
        q, k = rms_norm(q).astype(q.dtype), rms_norm(k).astype(k.dtype)
    if config.pos_embedding == "rope":
        q, k = apply_rope(q, pos + jnp.arange(q.shape[1])), apply_rope(k, pos + jnp.arange(k.shape[1]))
    return q, k


def _dense(config: GPTConfig, features, *, n_in=1, bias=None, std=None, name=None) -> Dense:
    return Dense(tuple(features), n_in=n_in, use_bias=config.bias if bias is None else bias,
                 std=config.init_std if std is None else std, dtype=config.dtype,
                 lora_rank=config.lora_rank, lora_alpha=config.lora_alpha, name=name)


def _residual_std(config: GPTConfig) -> float:
    """GPT-2 / nanoGPT: projections into the residual stream get std / sqrt(2 n_layer); zero with zero_init_proj."""
    if config.zero_init_proj:
        return 0.0
    if config.scaled_residual_init and config.n_layer:
        return config.init_std / math.sqrt(2 * config.n_layer)
    return config.init_std


class Head(nn.Module):
    """One head of self-attention (the lecture's Head): MultiHeadAttention's computation with H = 1, no projection."""
    config: GPTConfig
    head_size: int

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        qkv = _dense(self.config, (3, 1, self.head_size), bias=self.config.qkv_bias, name="qkv")(x)  # (B, T, 3, 1, hs)
        drop = lambda w: nn.Dropout(self.config.dropout)(w, deterministic=deterministic)
        return attention(*jnp.unstack(qkv, axis=2), drop, scale=self.config.attn_scale)[:, :, 0]  # (B, T, hs)


class MultiHeadAttention(nn.Module):
    """n_head heads in parallel as one batched einsum, then the output projection (lecture: `sa`)."""
    config: GPTConfig

    @nn.compact
    def __call__(self, x: jax.Array, cache: Cache = None, pos=0, deterministic: bool = True, ve=None):
        c = self.config
        qkv = _dense(c, (3, c.n_head, c.head_size), bias=c.qkv_bias, name="qkv")(x)  # (B, T, 3, H, hs)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if ve is not None:  # value embedding (B, T, C) of these tokens (GPTConfig.value_embeds, levers.py)
            v = v + ve.reshape(v.shape).astype(v.dtype)
        q, k = prepare_qk(c, q, k, pos)
        if cache is not None:  # write this chunk's keys/values at pos, attend over all block_size slots
            # heads first (B, H, block_size, hs): a decode step's q.k and wei.v then read the cache as it lies
            # (time-major, XLA copied each layer's keys to (B, H, hs, T) every step; docs/sampling.md)
            k = jax.lax.dynamic_update_slice(cache[0], k.swapaxes(1, 2).astype(cache[0].dtype), (0, 0, pos, 0))
            v = jax.lax.dynamic_update_slice(cache[1], v.swapaxes(1, 2).astype(cache[1].dtype), (0, 0, pos, 0))
            cache = (k, v)
        drop = lambda w: nn.Dropout(c.dropout)(w, deterministic=deterministic)
        y = attention(q, k, v, drop, pos, kv_heads_first=cache is not None, scale=c.attn_scale)  # (B, T, H, hs)
        if not c.proj:  # the lecture's heads before the residual step: torch.cat([h(x) for h in heads], -1)
            return y.reshape(*y.shape[:2], c.n_embd), cache  # (B, T, C)
        y = _dense(c, (c.n_embd,), n_in=2, std=_residual_std(c), name="proj")(y)  # (B, T, C)
        return nn.Dropout(c.dropout)(y, deterministic=deterministic), cache


class FeedForward(nn.Module):
    """Linear -> ReLU/GELU -> Linear -> Dropout, hidden width ffwd_mult * n_embd (lecture: `ffwd`); proj=False:
    Linear -> ReLU only (the lecture's feed-forward step)."""
    config: GPTConfig

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        c = self.config
        h = _dense(c, (c.ffwd_mult * c.n_embd,), name="fc")(x)  # (B, T, 4C)
        h = {"relu": nn.relu, "relu2": relu2, "gelu": functools.partial(nn.gelu, approximate=True),
             "gelu_exact": functools.partial(nn.gelu, approximate=False)}[c.activation](h)
        if not c.proj:  # the lecture's feed-forward step: Linear -> ReLU, n_embd wide (ffwd_mult 1)
            return h
        h = _dense(c, (c.n_embd,), std=_residual_std(c), name="proj")(h)  # (B, T, C)
        return nn.Dropout(c.dropout)(h, deterministic=deterministic)


def _layer_norm(config: GPTConfig, name: str):
    if not config.layer_norm:
        return lambda x: x
    if config.norm == "rms":
        return nn.RMSNorm(epsilon=1e-5, dtype=jnp.float32, name=name)
    return nn.LayerNorm(epsilon=1e-5, use_bias=config.bias, dtype=jnp.float32, name=name)


class Block(nn.Module):
    """Communication (attention) then computation (feed-forward), each pre-normed and residual (lecture: Block).
    `ve` (B, T, C): a value embedding added to the attention's values (GPTConfig.value_embeds)."""
    config: GPTConfig

    @nn.compact
    def __call__(self, x: jax.Array, cache: Cache, pos, deterministic: bool, ve: jax.Array | None = None):
        c = self.config
        y, cache = MultiHeadAttention(c, name="sa")(_layer_norm(c, "ln1")(x).astype(c.dtype), cache, pos,
                                                    deterministic, ve)
        x = x + y if c.residual else y
        if c.ffwd:
            y = FeedForward(c, name="ffwd")(_layer_norm(c, "ln2")(x).astype(c.dtype), deterministic)
            x = x + y if c.residual else y
        return x, cache


class GPTLanguageModel(nn.Module):
    """Token (+ position) embeddings -> n_layer Blocks -> ln_f -> lm_head (the lecture's GPTLanguageModel)."""
    config: GPTConfig

    def setup(self):
        c = self.config
        init = nn.initializers.normal(c.init_std)
        self.token_embedding_table = nn.Embed(c.padded_vocab_size, c.n_embd, embedding_init=init)
        if c.pos_embedding == "learned":
            self.position_embedding_table = nn.Embed(c.block_size, c.n_embd, embedding_init=init)
        if c.n_layer:  # stacked on a leading n_layer axis by levers.scan_blocks' nn.scan
            self.blocks = (nn.remat(Block, static_argnums=(4,), prevent_cse=not c.scan_layers) if c.remat else Block)(c)
        if c.unet_skips:  # levers.py
            self.skip_weights = self.param("skip_weights", nn.initializers.ones, (c.n_layer // 2,))
        if c.value_embeds:
            self.value_embeds = self.param("value_embeds", init, (c.value_embeds, c.padded_vocab_size, c.n_embd))
        self.ln_f = _layer_norm(c, "ln_f")
        if not c.tie_embeddings:
            self.lm_head = _dense(c, (c.padded_vocab_size,), name="lm_head")
        elif c.bias:
            self.lm_head_bias = self.param("lm_head_bias", nn.initializers.zeros, (c.padded_vocab_size,))

    def embed(self, idx: jax.Array, pos=0) -> jax.Array:
        """The input of the first Block: token (+ position) embeddings of idx (B, T) at positions pos.. (B, T, C)"""
        c, T = self.config, idx.shape[1]
        x = self.token_embedding_table(idx)  # (B, T, C)
        if c.pos_embedding == "learned":
            x = x + self.position_embedding_table(pos + jnp.arange(T))
        elif c.pos_embedding == "sinusoidal":
            x = x + jax.lax.dynamic_slice_in_dim(sinusoidal_positions(c.block_size, c.n_embd), pos, T)
        return x

    def value_embeddings(self, idx: jax.Array) -> jax.Array | None:
        """Each value-embedding table's rows of idx (B, T): (value_embeds, B, T, C), or None without them."""
        return jnp.take(self.value_embeds, idx, axis=1) if self.config.value_embeds else None

    def _forward(self, idx: jax.Array, cache: Cache, pos, deterministic: bool):
        c = self.config
        x = self.embed(idx, pos)  # (B, T, C)
        if c.n_layer:
            x, cache = scan_blocks(self.blocks, x, cache, pos, deterministic,
                                   self.skip_weights if c.unet_skips else None, self.value_embeddings(idx))
        return self.head(x), cache

    def head(self, x: jax.Array) -> jax.Array:
        """Logits (B, T, vocab_size) float32 from the last Block's output (B, T, C): ln_f, lm_head, soft cap."""
        c = self.config
        x = self.ln_f(x).astype(c.dtype)
        if c.tie_embeddings:
            logits = self.token_embedding_table.attend(x)
            if c.bias:
                logits = logits + self.lm_head_bias
        else:
            logits = self.lm_head(x)
        return soft_cap(logits[..., :c.vocab_size].astype(jnp.float32), c.logit_softcap)  # cut vocab_multiple's pad

    def __call__(self, idx: jax.Array, targets: jax.Array | None = None, deterministic: bool = True):
        logits, _ = self._forward(idx, None, 0, deterministic)
        return logits, None if targets is None else cross_entropy(logits, targets)

    def decode(self, idx: jax.Array, cache: Cache, pos):
        return self._forward(idx, cache, pos, True)


class BigramLanguageModel(nn.Module):
    """The lecture's bigram.py: each token reads the logits of the next one from a (vocab, vocab) table."""
    config: GPTConfig

    def setup(self):
        # N(0, 1): PyTorch's nn.Embedding default, which bigram.py uses
        self.token_embedding_table = nn.Embed(self.config.vocab_size, self.config.vocab_size,
                                              embedding_init=nn.initializers.normal(1.0))

    def __call__(self, idx: jax.Array, targets: jax.Array | None = None, deterministic: bool = True):
        logits = self.token_embedding_table(idx)  # (B, T, vocab_size)
        return logits, None if targets is None else cross_entropy(logits, targets)

    def decode(self, idx: jax.Array, cache: Cache, pos):
        return self.token_embedding_table(idx), cache


def build_model(config: GPTConfig) -> nn.Module:
    """The flax module for `config`: `GPTLanguageModel`, or `BigramLanguageModel` when config.model is "bigram".

    `build_model(config).apply({"params": params}, idx)` returns (logits (B, T, vocab_size), None)."""
    if config.model == "bigram":
        return BigramLanguageModel(config)
    if config.model == "gpt":
        return GPTLanguageModel(config)
    raise ValueError(f"model {config.model!r} has no neural network (count models live in jaxgpt.ngram)")


@functools.partial(jax.jit, static_argnums=0)
def init_params(config: GPTConfig, key: jax.Array) -> Params:
    """Parameters for `config` from `key` (compiled: an eager init runs op by op); shapes depend on the config only."""
    dummy = jnp.zeros((1, config.block_size), jnp.int32)
    return build_model(config).init({"params": key}, dummy)["params"]


def init_cache(config: GPTConfig, batch_size: int, dtype=jnp.float32) -> Cache:
    """Zeroed key/value cache with block_size slots per layer, or None for models that need none."""
    if config.model != "gpt" or config.n_layer == 0:
        return None
    shape = (config.n_layer, batch_size, config.n_head, config.block_size, config.head_size)
    return jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)


def loss_fn(params: Params, config: GPTConfig, x: jax.Array, y: jax.Array, dropout_key: jax.Array | None = None, *,
            weights: jax.Array | None = None, per_token: bool = False) -> jax.Array:
    """Mean cross-entropy () of `params` on inputs x and targets y (B, T); dropout is on when a dropout_key is given,
    `weights` (B, T) weighs each target (0 masks it). `per_token=True` returns the unreduced losses (B, T) instead
    (`.mean(-1)` gives per-example losses). Differentiable, jittable, vmappable:
    `jax.grad(loss_fn)(params, config, x, y)` is a params-shaped tree."""
    model = build_model(config)
    rngs = {} if dropout_key is None else {"dropout": dropout_key}
    logits, _ = model.apply({"params": params}, x, deterministic=dropout_key is None, rngs=rngs)
    if per_token:
        return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y)  # (B, T)
    return cross_entropy(logits, y, weights)
