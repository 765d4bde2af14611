"""Pictures: loss curves from metrics.jsonl, attention maps recomputed from params, and the two CLI hooks."""
import json

import jax
import numpy as np
import pytest

from conftest import tiny_with
from jaxgpt.cli import sample_main, train_main
from jaxgpt.model import init_params
from jaxgpt.viz import attention_maps, plot_attention, plot_losses

pytest.importorskip("matplotlib")
PNG = b"\x89PNG\r\n\x1a\n"


def test_loss_png_from_metrics(tmp_path):
    records = [{"step": s, "train_loss": 4.0 - s / 10, "val_loss": 4.1 - s / 10} for s in range(0, 30, 10)]
    records[-1]["val_loss_full"] = 1.2
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = plot_losses(tmp_path / "metrics.jsonl", tmp_path / "loss.png")
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 5000


def _layer_norm(x, scale, bias):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * scale + bias


def test_attention_maps_are_the_models_weights(tmp_path):
    c = tiny_with(n_layer=2, n_head=2, init_std=0.5)  # large weights: peaked, distinguishable maps
    params = init_params(c, jax.random.PRNGKey(0))
    idx = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    maps = attention_maps(params, c, idx)
    assert maps.shape == (2, 2, 8, 8)
    np.testing.assert_allclose(maps.sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.triu(maps, k=1) == 0)  # causal: no weight on later characters
    # layer 0 recomputed independently in numpy: embeddings -> ln1 -> q, k -> softmax(q k / sqrt(hs)), masked
    x = np.asarray(params["token_embedding_table"]["embedding"])[idx] + \
        np.asarray(params["position_embedding_table"]["embedding"])[:8]
    b = jax.tree.map(lambda a: np.asarray(a)[0], params["blocks"])
    h = _layer_norm(x, b["ln1"]["scale"], b["ln1"]["bias"])
    qkv = np.einsum("tc,cjhd->tjhd", h, b["sa"]["qkv"]["kernel"])  # (T, 3, H, hs)
    scores = np.einsum("qhd,khd->hqk", qkv[:, 0], qkv[:, 1]) / np.sqrt(c.head_size)
    scores = np.where(np.tril(np.ones((8, 8), bool)), scores, -np.inf)
    expected = np.exp(scores - scores.max(-1, keepdims=True))
    np.testing.assert_allclose(maps[0], expected / expected.sum(-1, keepdims=True), atol=1e-5)
    out = plot_attention(maps, list("abcdefgh"), tmp_path / "attn.png")
    assert out.read_bytes()[:8] == PNG


def test_train_writes_loss_png_and_sample_draws_attention(small_text, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--preset", "baby", "--data", str(small_text), "--out-dir", str(run), "--max-iters", "2"]
    for kv in ("n_layer=1", "n_head=2", "n_embd=16", "block_size=16", "eval_iters=1", "eval_interval=2",
               "sample_chars=0", "batch_size=4"):
        args += ["--set", kv]
    assert train_main(args) == 0
    assert (run / "loss.png").read_bytes()[:8] == PNG
    png = tmp_path / "attn.png"
    assert sample_main(["--out-dir", str(run), "--attention-png", str(png), "--prompt", "First Citizen"]) == 0
    assert png.read_bytes()[:8] == PNG and "1 x 2 attention maps of 13 characters" in capsys.readouterr().out
    assert sample_main(["--out-dir", str(run), "--attention-png", str(tmp_path / "no" / "a.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
