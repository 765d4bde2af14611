"""Pictures (matplotlib, the optional `viz` extra): a run's loss curves and a model's attention maps.

Attention weights are recomputed from the parameters, layer by layer, with the model's own modules: the model's
`embed` feeds `model.Block` applied to that layer's slice of the stacked `blocks` parameters, and each Block's `qkv`
output (captured by flax's capture_intermediates) goes through `attention.attention_weights`, the same softmax
as `model.attention`. Nothing of the model is copied.
"""
from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .attention import attention_weights
from .config import GPTConfig
from .levers import block_inputs
from .model import Block, GPTLanguageModel, prepare_qk


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on a training machine
    import matplotlib.pyplot as plt
    return plt


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_losses(metrics_path: Path, png_path: Path, title: str | None = None) -> Path:
    """Train and validation loss (estimate_loss) against step; the final full-pass validation loss as a star; each
    step's training loss (steps.jsonl beside metrics.jsonl, when the run wrote one) as a thin line under them."""
    plt = _pyplot()
    records = read_metrics(metrics_path)
    if not records:
        raise ValueError(f"{metrics_path} holds no metrics records")
    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    per_step = Path(metrics_path).with_name("steps.jsonl")
    if per_step.is_file() and (logged := read_metrics(per_step)):
        ax.plot([r["step"] for r in logged], [r["loss"] for r in logged], "-", lw=0.7, alpha=0.5, color="gray",
                label="train (each step's batch)")
    ax.plot(steps, [r["train_loss"] for r in records], "o-", ms=3, label="train (estimate)")
    ax.plot(steps, [r["val_loss"] for r in records], "o-", ms=3, label="val (estimate)")
    full = [(r["step"], r["val_loss_full"]) for r in records if "val_loss_full" in r]
    for step, loss in full[-1:]:
        ax.plot([step], [loss], "*", ms=12, color="black", label=f"val, full pass: {loss:.4f}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats / character)")
    ax.set_title(title or str(Path(metrics_path).parent.name))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return Path(png_path)


def save_loss_png(out_dir: Path) -> Path | None:
    """loss.png next to a run's metrics.jsonl, or None without matplotlib (an optional extra)."""
    metrics = Path(out_dir) / "metrics.jsonl"
    if not have_matplotlib() or not metrics.is_file():
        return None
    return plot_losses(metrics, Path(out_dir) / "loss.png")


def attention_maps(params, config: GPTConfig, idx) -> np.ndarray:
    """Every layer's and head's attention weights for one sequence idx (T,) with T <= block_size. (L, H, T, T)"""
    if config.model != "gpt" or config.n_layer == 0:
        raise ValueError(f"model {config.model!r} with n_layer {config.n_layer} has no attention to draw")
    idx = jnp.asarray(idx, jnp.int32).reshape(1, -1)[:, -config.block_size:]
    model = GPTLanguageModel(config)
    x = model.apply({"params": params}, idx, method="embed")  # (1, T, C)
    ves, maps, outputs = model.apply({"params": params}, idx, method="value_embeddings"), [], []
    for layer in range(config.n_layer):
        p = jax.tree.map(lambda a: a[layer], params["blocks"])
        x, ve = block_inputs(config, layer, x, outputs, params.get("skip_weights"), ves)  # levers.py
        (x, _), state = Block(config).apply({"params": p}, x, None, 0, True, ve, capture_intermediates=True,
                                            mutable=["intermediates"])
        outputs.append(x)
        qkv = state["intermediates"]["sa"]["qkv"]["__call__"][0]  # (1, T, 3, H, hs)
        q, k = prepare_qk(config, qkv[:, :, 0], qkv[:, :, 1])
        maps.append(attention_weights(q, k, scale=config.attn_scale)[0])  # (H, T, T)
    return np.asarray(jnp.stack(maps))


def plot_attention(maps: np.ndarray, chars: list[str], png_path: Path, title: str = "") -> Path:
    """A grid of layers (rows) x heads (columns); row = query character, column = key character."""
    plt = _pyplot()
    L, H, T, _ = maps.shape
    size = max(1.6, 0.11 * T)
    fig, axes = plt.subplots(L, H, figsize=(size * H + 0.6, size * L + 0.8), dpi=110, squeeze=False)
    shown = [{"\n": "\\n", " ": "␣"}.get(ch, ch) for ch in chars]
    for layer in range(L):
        for head in range(H):
            ax = axes[layer, head]
            ax.imshow(maps[layer, head], cmap="viridis", vmin=0.0, vmax=1.0)
            labels = shown if T <= 64 else [""] * T  # beyond 64 characters the labels overlap
            ax.set_xticks(range(T), labels, fontsize=5)
            ax.set_yticks(range(T), labels, fontsize=5)
            ax.set_title(f"layer {layer}, head {head}", fontsize=7)
    fig.suptitle(title or "attention weights (row: query, column: key)", fontsize=9)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return Path(png_path)


def attention_png(params, config: GPTConfig, tokenizer, idx, png_path: Path) -> Path:
    """The maps of the token ids idx (T,), T <= block_size, drawn into png_path with their characters as labels."""
    maps = attention_maps(params, config, idx)
    return plot_attention(maps, [tokenizer.decode([i]) for i in idx], png_path,
                          f"attention of {config.n_layer} layers x {config.n_head} heads over {tokenizer.decode(idx)!r}")
