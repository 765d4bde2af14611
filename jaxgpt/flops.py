"""Model FLOPs utilisation: training FLOPs per token of a config, and the peak of the device that runs it.

MFU = tokens/s x FLOPs per token / (devices x peak FLOP/s per device) (PaLM, Chowdhery et al. 2022, appendix B;
nanoGPT's `estimate_mfu`). Peaks are the dense bf16 matrix-unit peaks from the vendors' data sheets, per JAX
device; a float32 run is measured against the same peak, as nanoGPT does. Devices not in the table (CPUs among
them) have no peak: their MFU is "unknown", never a guess.
"""
from __future__ import annotations

import jax

from .config import GPTConfig

# JAX device_kind -> dense bf16 FLOP/s of one JAX device. TPU v2/v3 expose each TensorCore as a device (2 per
# chip); from v4 on one device is a whole chip.
TPU_PEAKS = {
    "TPU v2": 22.5e12,        # 45 TFLOP/s per chip
    "TPU v3": 61.5e12,        # 123 TFLOP/s per chip
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,    # v5e
    "TPU v5e": 197e12,
    "TPU v5": 459e12,         # v5p
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,    # v6e (Trillium)
    "TPU v6e": 918e12,
}
# substring of the CUDA device name -> dense bf16/fp16 tensor-core FLOP/s (no sparsity); first match wins
GPU_PEAKS = (
    ("H100 PCIe", 756e12),
    ("H100", 989e12),         # SXM ("NVIDIA H100 80GB HBM3")
    ("H200", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("V100", 125e12),         # fp16
    ("T4", 65e12),            # fp16
)


def device_peak_flops(device=None) -> float | None:
    """Peak FLOP/s of one device of this kind, or None when unknown (CPUs, unlisted accelerators)."""
    device = device or jax.devices()[0]
    kind = device.device_kind
    if device.platform == "tpu":
        return TPU_PEAKS.get(kind)
    if device.platform == "gpu":
        return next((peak for name, peak in GPU_PEAKS if name in kind), None)
    return None


def _leaf_name(path) -> str:
    return "/".join(str(getattr(k, "key", k)) for k in path)


def matmul_params(mc: GPTConfig, params) -> int:
    """Parameters that take part in a matrix multiply: all but the position table (added) and the token table
    (a lookup) unless it is tied to the lm_head. `params` may be abstract (jax.eval_shape)."""
    total = 0
    for path, p in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = _leaf_name(path)
        if name.startswith("position_embedding_table"):
            continue
        if name.startswith("token_embedding_table") and not (mc.model == "gpt" and mc.tie_embeddings):
            continue
        total += int(p.size)
    return total


def flops_per_token(mc: GPTConfig, params) -> float:
    """Training FLOPs per token (forward + backward): 6 N for the weights, 12 L C T for the attention scores and
    their weighted sum (nanoGPT counts the full T x T square, not the causal half). The bigram model has no
    matrix multiply: 0."""
    if mc.model != "gpt":
        return 0.0
    return 6.0 * matmul_params(mc, params) + 12.0 * mc.n_layer * mc.n_embd * mc.block_size


def mfu(tokens_per_s: float, flops_per_token: float, n_devices: int, peak: float | None) -> float | None:
    """Fraction of the devices' peak the run achieves, or None when the peak is unknown."""
    if not peak or n_devices < 1:
        return None
    return tokens_per_s * flops_per_token / (n_devices * peak)


def describe(flops: float, peak: float | None, n_devices: int) -> str:
    peak_text = f"{peak / 1e12:g} TFLOP/s per device x {n_devices}" if peak else "unknown (MFU not reported)"
    return f"{flops / 1e6:.2f} MFLOPs per token; peak {peak_text}"
