"""The `gpt2-124m` preset: nanoGPT's config/train_gpt2.py, pinned; its 124M shapes without running them; one real
optimizer step on the CPU at a reduced size through train.py; and the padded vocabulary it relies on."""
import json
from dataclasses import replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from conftest import TINY
from jaxgpt import build_model, init_params
from jaxgpt.cli import train_main
from jaxgpt.presets import get_preset
from jaxgpt.training import create_state


def test_the_preset_is_nanogpts_train_gpt2():
    p = get_preset("gpt2-124m")
    m, t = p.model, p.train
    assert (m.n_layer, m.n_head, m.n_embd, m.block_size) == (12, 12, 768, 1024)
    assert (m.vocab_size, m.vocab_multiple, m.padded_vocab_size) == (50257, 64, 50304)  # GPT-2's, padded
    assert (m.dropout, m.bias, m.qkv_bias, m.tie_embeddings, m.activation, m.pos_embedding, m.norm) == (
        0.0, False, False, True, "gelu_exact", "learned", "layer")
    assert m.scaled_residual_init and m.init_std == 0.02 and m.dtype == "bfloat16"
    assert t.batch_size * m.block_size == 491_520  # 12 x 1024 x 40 micro-steps of nanoGPT
    assert t.batch_size // 12 == 40 and t.gradient_accumulation_steps == 20  # 24 a micro-batch: 3 a v5e chip of 8
    assert (t.learning_rate, t.min_lr, t.warmup_iters, t.lr_decay_iters, t.max_iters) == (
        6e-4, 6e-5, 2000, 600_000, 600_000)
    assert (t.weight_decay, t.beta1, t.beta2, t.grad_clip, t.decay_lr, t.optimizer) == (
        0.1, 0.9, 0.95, 1.0, True, "adamw")
    assert (t.eval_interval, t.eval_iters) == (1000, 200)


def test_the_full_size_model_has_124m_parameters_from_shapes_alone():
    p = get_preset("gpt2-124m")
    state = jax.eval_shape(partial(create_state, p.model, p.train))  # shapes only: nothing is allocated
    n = sum(x.size for x in jax.tree.leaves(state.params))
    assert n == 124_373_760
    assert n - 1024 * 768 == 123_587_328  # nanoGPT prints "number of parameters: 123.59M" (less the position table)
    assert state.params["token_embedding_table"]["embedding"].shape == (50304, 768)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))  # bf16 compute, float32 parameters


def test_padded_rows_are_never_predicted_and_change_nothing_else():
    """A table padded to vocab_multiple gives the logits of the unpadded model made of its first vocab_size rows."""
    padded = replace(TINY, vocab_multiple=8, tie_embeddings=True)  # 11 -> 16 rows
    plain = replace(padded, vocab_multiple=1)
    params = init_params(padded, jax.random.PRNGKey(0))
    table = params["token_embedding_table"]["embedding"]
    assert table.shape == (16, TINY.n_embd)
    cut = {**params, "token_embedding_table": {"embedding": table[:11]}, "lm_head_bias": params["lm_head_bias"][:11]}
    idx = jax.random.randint(jax.random.PRNGKey(1), (2, TINY.block_size), 0, 11)
    a, loss_a = build_model(padded).apply({"params": params}, idx, idx)
    b, loss_b = build_model(plain).apply({"params": cut}, idx, idx)
    assert a.shape == (2, TINY.block_size, 11)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-6)


def test_one_step_at_a_reduced_size_through_train_py(small_text, tmp_path, capsys):
    out = tmp_path / "gpt2"
    sets = dict(n_layer=2, n_head=2, n_embd=64, block_size=32, batch_size=4, gradient_accumulation_steps=2,
                steps_per_call=1, eval_interval=1, eval_iters=1, ckpt_interval=1, warmup_iters=0, sample_chars=30)
    argv = ["--preset", "gpt2-124m", "--data", str(small_text), "--out-dir", str(out), "--max-iters", "1",
            "--set", *[f"{k}={v}" for k, v in sets.items()]]
    assert train_main(argv) == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    chars = json.loads((out / "tokenizer.json").read_text())["chars"]
    m = config["model"]
    assert (m["vocab_size"], m["vocab_multiple"], m["dtype"]) == (len(chars), 64, "bfloat16")  # table: 64 rows+
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1]
    assert all(np.isfinite(r[k]) for r in records for k in ("train_loss", "val_loss"))
    assert np.isfinite(records[-1]["val_loss_full"])
