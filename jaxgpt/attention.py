"""Attention variants on `model.attention` (the package's one attention computation), and a reversal seq2seq.

- `model.Head` (one head) and `model.MultiHeadAttention` (causal, all heads in one einsum): the lecture's.
- `SelfAttention(causal=False)`: the same layout (`qkv` (C, 3, H, hs), `proj` (H, hs, C)) without the mask.
- `CrossAttention`: queries from x, keys and values from another sequence (Vaswani et al. 2017, decoder).
- `EncoderBlock` / `DecoderBlock`: pre-norm Transformer blocks; the decoder adds cross-attention.
- `SpatialSelfAttention`: self-attention over a (B, H, W, C) feature map read as H*W tokens (as in diffusion U-Nets).
- `Seq2Seq` + `reversal_*`: an encoder-decoder that learns to reverse strings, the end-to-end test of cross-attention.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .config import GPTConfig, TrainConfig
from .model import FeedForward, _dense, _layer_norm, attention, cross_entropy
from .training import make_optimizer


def attention_weights(q: jax.Array, k: jax.Array, pos=0, causal: bool = True, scale: float = 0.0) -> jax.Array:
    """softmax(q k^T / sqrt(hs)) (q k^T x scale when scale > 0) as `attention` computes it, read out by attending
    over one-hot values.

    Returns (B, H, Tq, Tk)."""
    Tk = k.shape[1]
    eye = jnp.broadcast_to(jnp.eye(Tk, dtype=jnp.float32)[None, :, None, :], (k.shape[0], Tk, k.shape[2], Tk))
    return attention(q.astype(jnp.float32), k.astype(jnp.float32), eye, lambda w: w, pos, causal,
                     scale=scale).transpose(0, 2, 1, 3)


class SelfAttention(nn.Module):
    """Multi-head self-attention with the mask as a switch: causal (decoder) or not (encoder)."""
    config: GPTConfig
    causal: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        c = self.config
        qkv = _dense(c, (3, c.n_head, c.head_size), bias=c.qkv_bias, name="qkv")(x)  # (B, T, 3, H, hs)
        drop = lambda w: nn.Dropout(c.dropout)(w, deterministic=deterministic)
        y = attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], drop, causal=self.causal,
                      scale=c.attn_scale)  # (B, T, H, hs)
        return _dense(c, (c.n_embd,), n_in=2, name="proj")(y)  # (B, T, C)


class CrossAttention(nn.Module):
    """Queries from x (B, Tq, C), keys and values from `context` (B, Tk, Cc); every query sees every key."""
    config: GPTConfig

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array, deterministic: bool = True) -> jax.Array:
        c = self.config
        q = _dense(c, (c.n_head, c.head_size), bias=c.qkv_bias, name="q")(x)  # (B, Tq, H, hs)
        kv = _dense(c, (2, c.n_head, c.head_size), bias=c.qkv_bias, name="kv")(context)  # (B, Tk, 2, H, hs)
        drop = lambda w: nn.Dropout(c.dropout)(w, deterministic=deterministic)
        y = attention(q, kv[:, :, 0], kv[:, :, 1], drop, causal=False, scale=c.attn_scale)  # (B, Tq, H, hs)
        return _dense(c, (c.n_embd,), n_in=2, name="proj")(y)  # (B, Tq, C)


class EncoderBlock(nn.Module):
    """Block without the causal mask: every position sees the whole sequence."""
    config: GPTConfig

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        c = self.config
        x = x + SelfAttention(c, causal=False, name="sa")(_layer_norm(c, "ln1")(x), deterministic)
        return x + FeedForward(c, name="ffwd")(_layer_norm(c, "ln2")(x), deterministic)


class DecoderBlock(nn.Module):
    """Causal self-attention, then cross-attention to the encoder's output, then feed-forward."""
    config: GPTConfig

    @nn.compact
    def __call__(self, x: jax.Array, memory: jax.Array, deterministic: bool = True) -> jax.Array:
        c = self.config
        x = x + SelfAttention(c, causal=True, name="sa")(_layer_norm(c, "ln1")(x), deterministic)
        x = x + CrossAttention(c, name="ca")(_layer_norm(c, "ln2")(x), memory, deterministic)
        return x + FeedForward(c, name="ffwd")(_layer_norm(c, "ln3")(x), deterministic)


class SpatialSelfAttention(nn.Module):
    """Self-attention over a 2-D feature map: (B, H, W, C) -> H*W tokens -> unmasked attention -> (B, H, W, C)."""
    config: GPTConfig

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        B, H, W, C = x.shape
        y = SelfAttention(self.config, causal=False, name="sa")(x.reshape(B, H * W, C), deterministic)
        return y.reshape(B, H, W, C)


class Seq2Seq(nn.Module):
    """Encoder (n_layer EncoderBlocks) over src, decoder (n_layer DecoderBlocks) over tgt_in; logits (B, Tt, V)."""
    config: GPTConfig

    def setup(self):
        c = self.config
        embed = lambda rows: nn.Embed(rows, c.n_embd, embedding_init=nn.initializers.normal(c.init_std))
        self.src_embedding, self.tgt_embedding = embed(c.vocab_size), embed(c.vocab_size)
        self.src_position, self.tgt_position = embed(c.block_size), embed(c.block_size)
        self.encoder = [EncoderBlock(c) for _ in range(c.n_layer)]
        self.decoder = [DecoderBlock(c) for _ in range(c.n_layer)]
        self.ln_enc, self.ln_f = _layer_norm(c, "ln_enc"), _layer_norm(c, "ln_f")
        self.lm_head = _dense(c, (c.vocab_size,), name="lm_head")

    def encode(self, src: jax.Array) -> jax.Array:
        x = self.src_embedding(src) + self.src_position(jnp.arange(src.shape[1]))  # (B, Ts, C)
        for block in self.encoder:
            x = block(x)
        return self.ln_enc(x)

    def decode(self, tgt_in: jax.Array, memory: jax.Array) -> jax.Array:
        """Logits (B, Tt, V) of the decoder over tgt_in, attending to the encoder's `memory` (B, Ts, C)."""
        x = self.tgt_embedding(tgt_in) + self.tgt_position(jnp.arange(tgt_in.shape[1]))  # (B, Tt, C)
        for block in self.decoder:
            x = block(x, memory)
        return self.lm_head(self.ln_f(x)).astype(jnp.float32)

    def __call__(self, src: jax.Array, tgt_in: jax.Array) -> jax.Array:
        return self.decode(tgt_in, self.encode(src))


# --- the reversal task: src of `length` symbols in 0..n_symbols-1, target src[::-1], BOS = n_symbols ---

def reversal_held_out(src: np.ndarray) -> np.ndarray:
    """A fixed 1-in-8 class of strings (by a hash of their symbols) never trained on: the held-out set."""
    return (src @ (np.arange(src.shape[-1]) * 7 + 3)) % 8 == 0  # numpy or jax arrays


def reversal_batch(key: jax.Array, batch_size: int, length: int, n_symbols: int):
    """(src, tgt_in, tgt, weights): teacher forcing shifts the reversed string right behind BOS; held-out strings
    weigh 0."""
    src = jax.random.randint(key, (batch_size, length), 0, n_symbols)
    tgt = src[:, ::-1]
    tgt_in = jnp.concatenate([jnp.full((batch_size, 1), n_symbols), tgt[:, :-1]], axis=1)
    weights = jnp.broadcast_to(~reversal_held_out(src)[:, None], tgt.shape).astype(jnp.float32)
    return src, tgt_in, tgt, weights


@functools.partial(jax.jit, static_argnames=("config", "tc", "n_symbols", "length", "n_steps"), donate_argnums=(0, 1))
def _reversal_steps(params, opt_state, key, config: GPTConfig, tc: TrainConfig, n_symbols: int, length: int,
                    n_steps: int):
    opt = make_optimizer(config, tc)

    def step(carry, k):
        params, opt_state = carry
        src, tgt_in, tgt, w = reversal_batch(k, tc.batch_size, length, n_symbols)
        loss_of = lambda p: cross_entropy(Seq2Seq(config).apply({"params": p}, src, tgt_in), tgt, w)
        loss, grads = jax.value_and_grad(loss_of)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), jax.random.split(key, n_steps))
    return params, opt_state, losses


@functools.partial(jax.jit, static_argnames=("config", "n_symbols"))
def greedy_decode(params, config: GPTConfig, src: jax.Array, n_symbols: int) -> jax.Array:
    """Feed back the argmax token one position at a time (full recompute, causal mask); (B, length)."""
    B, L = src.shape
    model = Seq2Seq(config)
    memory = model.apply({"params": params}, src, method="encode")
    out = jnp.full((B, L + 1), n_symbols, jnp.int32)  # BOS, then the answer

    def body(i, out):
        logits = model.apply({"params": params}, out[:, :L], memory, method="decode")
        return out.at[:, i + 1].set(jnp.argmax(logits[:, i], axis=-1).astype(jnp.int32))
    return jax.lax.fori_loop(0, L, body, out)[:, 1:]


def train_reversal(config: GPTConfig, tc: TrainConfig, key: jax.Array, n_symbols: int = 10, length: int = 8,
                   steps_per_call: int = 100) -> tuple[dict, np.ndarray]:
    """Train a Seq2Seq to reverse strings for tc.max_iters steps; returns (params, losses)."""
    init_key, train_key = jax.random.split(key)
    dummy = jnp.zeros((1, length), jnp.int32)
    params = jax.jit(Seq2Seq(config).init)(init_key, dummy, dummy)["params"]
    opt_state = jax.jit(make_optimizer(config, tc).init)(params)
    losses = []
    for i in range(0, tc.max_iters, steps_per_call):
        params, opt_state, l = _reversal_steps(params, opt_state, jax.random.fold_in(train_key, i), config, tc,
                                               n_symbols, length, min(steps_per_call, tc.max_iters - i))
        losses.append(np.asarray(l))
    return params, np.concatenate(losses)


def reversal_accuracy(params, config: GPTConfig, src: np.ndarray, n_symbols: int = 10) -> float:
    """Exact-match rate of greedy decoding against src reversed."""
    pred = np.asarray(greedy_decode(params, config, jnp.asarray(src, jnp.int32), n_symbols))
    return float(np.mean(np.all(pred == np.asarray(src)[:, ::-1], axis=1)))


def held_out_strings(rng: np.random.Generator, count: int, length: int = 8, n_symbols: int = 10) -> np.ndarray:
    src = rng.integers(0, n_symbols, (count * 12, length))
    return src[reversal_held_out(src)][:count]
