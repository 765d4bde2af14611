"""Weights from elsewhere: the lecture's `gpt.py`, nanoGPT (a `state_dict` or its `ckpt.pt`) and Hugging Face GPT-2.

    config, params = interop.from_nanogpt_ckpt("out-shakespeare-char/ckpt.pt")   # torch.load(weights_only=True)
    state_dict, model_args = interop.to_nanogpt(params, config)                  # nanoGPT's key names
    interop.to_hf(params, config).save_pretrained("gpt2-jaxgpt")                 # a GPT2LMHeadModel

One table (`_gpt2_table`) maps GPT-2's key names, which nanoGPT kept, onto jaxgpt's tree (qkv (C, 3, H, hs),
attention projection (H, hs, C), Blocks stacked on a leading n_layer axis); nanoGPT stores `nn.Linear` weights
(out, in), Hugging Face `Conv1D` weights (in, out); the lecture's per-head key/query/value are concatenated into
`c_attn` first. torch / transformers are optional extras, imported inside the calls that need them.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from .config import GPTConfig
from .errors import CheckpointError, ConfigError, require_extra

# Fields a format stores nothing about (training, compute and init choices): any value exports.
_FREE = {"vocab_size", "block_size", "n_layer", "n_head", "n_embd", "dropout", "init_std", "scaled_residual_init",
         "dtype", "scan_layers", "remat"}
# What each format's architecture fixes. Every other field must keep GPTConfig's default, so a switch added later
# (say RoPE or RMSNorm) is refused by name until the format learns it.
FORMATS = {
    "nanogpt": dict(model="gpt", pos_embedding="learned", ffwd_mult=4, activation="gelu_exact", tie_embeddings=True,
                    lora_rank=0),  # nanoGPT's bias switch sets Linear, LayerNorm and c_attn biases together
    "hf": dict(model="gpt", pos_embedding="learned", activation="gelu", tie_embeddings=True, bias=True,
               qkv_bias=True, lora_rank=0),  # ffwd_mult is GPT-2's n_inner / n_embd
}
_FORMAT_FREE = {"nanogpt": {"bias", "qkv_bias"}, "hf": {"ffwd_mult"}}
_BUFFERS = re.compile(r"(\.attn\.bias|\.attn\.masked_bias|\.tril)$")  # causal masks some versions save


def check_exportable(config: GPTConfig, fmt: str) -> None:
    """Raise ConfigError naming the first field of `config` that format `fmt` ("nanogpt" or "hf") cannot express."""
    if fmt not in FORMATS:
        raise ConfigError(f"format {fmt!r} is not one of {', '.join(map(repr, FORMATS))}")
    default = GPTConfig()
    for f in dataclasses.fields(config):
        if f.name in _FREE or f.name in _FORMAT_FREE[fmt]:
            continue
        want = FORMATS[fmt].get(f.name, getattr(default, f.name))
        if getattr(config, f.name) != want:
            raise ConfigError(f"{f.name}={getattr(config, f.name)!r} cannot be expressed in the {fmt} format "
                              f"(it needs {f.name}={want!r})")
    if fmt == "nanogpt" and config.qkv_bias != config.bias:
        raise ConfigError(f"qkv_bias={config.qkv_bias!r} with bias={config.bias!r} cannot be expressed in the nanogpt "
                          f"format (one bias switch for all layers)")


# ---------------------------------------------------------------------------------------------------- the table

def _gpt2_table(c: GPTConfig) -> list[tuple[str, tuple, int]]:
    """(their key, our path, n_in) per tensor; `{i}` in a key marks a Block (our leaf then has a leading layer axis).
    n_in: how many leading axes of our kernel are the input (0: not a matrix, only reshaped)."""
    rows = [("transformer.wte.weight", ("token_embedding_table", "embedding"), 0),
            ("transformer.wpe.weight", ("position_embedding_table", "embedding"), 0)]
    ln = lambda theirs, ours: [(f"{theirs}.weight", (*ours, "scale"), 0)] + \
        ([(f"{theirs}.bias", (*ours, "bias"), 0)] if c.bias else [])
    linear = lambda theirs, ours, n_in, bias: [(f"{theirs}.weight", (*ours, "kernel"), n_in)] + \
        ([(f"{theirs}.bias", (*ours, "bias"), 0)] if bias else [])
    h, b = "transformer.h.{i}", "blocks"
    rows += ln(f"{h}.ln_1", (b, "ln1")) + linear(f"{h}.attn.c_attn", (b, "sa", "qkv"), 1, c.qkv_bias)
    rows += linear(f"{h}.attn.c_proj", (b, "sa", "proj"), 2, c.bias) + ln(f"{h}.ln_2", (b, "ln2"))
    rows += linear(f"{h}.mlp.c_fc", (b, "ffwd", "fc"), 1, c.bias) + linear(f"{h}.mlp.c_proj", (b, "ffwd", "proj"), 1,
                                                                           c.bias)
    rows += ln("transformer.ln_f", ("ln_f",))
    if not c.tie_embeddings:  # the lecture's own lm_head (nanoGPT and GPT-2 tie it to wte)
        rows += linear("lm_head", ("lm_head",), 1, c.bias)
    return rows


def _get(tree: dict, path: tuple):
    for k in path:
        tree = tree[k]
    return tree


def _put(tree: dict, path: tuple, value) -> None:
    for k in path[:-1]:
        tree = tree.setdefault(k, {})
    tree[path[-1]] = value


def _numpy(sd: dict) -> dict:
    """{key: float32 numpy} with torch.compile's `_orig_mod.` prefix and the causal-mask buffers dropped."""
    out = {}
    for k, v in sd.items():
        k = k.removeprefix("_orig_mod.")
        if not _BUFFERS.search(k):
            out[k] = np.asarray(v.detach().cpu().float().numpy() if hasattr(v, "detach") else v, np.float32)
    return out


def _import(sd: dict, c: GPTConfig, conv1d: bool, where: str):
    """A GPT-2-named numpy state dict -> jaxgpt params for config `c` (shapes checked against init_params)."""
    from .model import init_params
    import jax

    want = jax.eval_shape(lambda: init_params(c, jax.random.PRNGKey(0)))
    params, used = {}, set()
    for key, path, n_in in _gpt2_table(c):
        shape = _get(want, path).shape
        keys = [key.format(i=i) for i in range(c.n_layer)] if "{i}" in key else [key]
        missing = [k for k in keys if k not in sd]
        if missing:
            raise CheckpointError(f"{where} has no {missing[0]} (needed for {'/'.join(path)})")
        one_shape = shape[1:] if "{i}" in key else shape
        arrays = []
        for k in keys:
            w = sd[k] if conv1d or n_in == 0 else sd[k].T
            if w.size != int(np.prod(one_shape)):
                raise CheckpointError(f"{where}: {k} is {sd[k].shape}, which does not fit {'/'.join(path)} "
                                      f"{tuple(one_shape)} of {c}")
            arrays.append(w.reshape(one_shape))
            used.add(k)
        _put(params, path, jnp.asarray(np.stack(arrays) if "{i}" in key else arrays[0]))
    if c.tie_embeddings and c.bias:  # jaxgpt's tied head may carry a bias; these formats have none
        params["lm_head_bias"] = jnp.zeros((c.vocab_size,), jnp.float32)
    extra = sorted(set(sd) - used - {"lm_head.weight"} if c.tie_embeddings else set(sd) - used)
    if extra:
        raise CheckpointError(f"{where} holds {len(extra)} tensor(s) this config does not use, e.g. {extra[0]}")
    return params


def _export(params, c: GPTConfig, conv1d: bool, fmt: str) -> dict:
    """jaxgpt params -> {GPT-2 key: float32 numpy}, with the tied lm_head.weight written as well."""
    check_exportable(c, fmt)
    if "lm_head_bias" in params and np.any(np.asarray(params["lm_head_bias"])):
        raise ConfigError(f"lm_head_bias is nonzero, which the {fmt} format cannot express (its lm_head has no bias)")
    sd = {}
    for key, path, n_in in _gpt2_table(c):
        leaf = np.asarray(_get(params, path), np.float32)
        for i, x in enumerate(leaf if "{i}" in key else [leaf]):
            if n_in:
                x = x.reshape(int(np.prod(x.shape[:n_in])), -1)
                x = x if conv1d else x.T
            elif path[-1] == "bias":
                x = x.reshape(-1)  # qkv bias (3, H, hs) -> c_attn's (3C,)
            sd[key.format(i=i)] = np.ascontiguousarray(x)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    return sd


def _n_layer(sd: dict, pattern: str) -> int:
    layers = {int(m.group(1)) for k in sd if (m := re.match(pattern, k))}
    return max(layers) + 1 if layers else 0


def _gpt2_config(sd: dict, n_head: int, **fields) -> GPTConfig:
    """A GPTConfig from the shapes of a GPT-2-named state dict (n_head is not in the shapes)."""
    try:
        vocab, n_embd = sd["transformer.wte.weight"].shape
        block = sd["transformer.wpe.weight"].shape[0]
    except KeyError as e:
        raise CheckpointError(f"not a GPT-2 / nanoGPT state dict: no {e.args[0]}") from None
    n_layer = _n_layer(sd, r"transformer\.h\.(\d+)\.")
    fc = sd.get("transformer.h.0.mlp.c_fc.weight")
    hidden = max(fc.shape) if fc is not None else 4 * n_embd
    return GPTConfig(**{**dict(vocab_size=vocab, block_size=block, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                               ffwd_mult=hidden // n_embd, dropout=0.0), **fields})


# ---------------------------------------------------------------------------------------------------- nanoGPT

def from_nanogpt(state_dict: dict, n_head: int, **fields) -> tuple[GPTConfig, dict]:
    """(config, params) from nanoGPT's `GPT.state_dict()` (torch tensors or arrays). Shapes give every size but
    n_head; `fields` override the config (e.g. dropout=0.1). Takes the `_orig_mod.` prefix of torch.compile and the
    `attn.bias` mask buffer of older versions."""
    sd = _numpy(state_dict)
    bias = "transformer.ln_f.bias" in sd
    c = _gpt2_config(sd, n_head, **{**dict(bias=bias, qkv_bias=bias, activation="gelu_exact",
                                            tie_embeddings=True), **fields})
    return c, _import(sd, c, conv1d=False, where="the nanoGPT state dict")


def to_nanogpt(params, config: GPTConfig) -> tuple[dict, dict]:
    """(state_dict of torch tensors, model_args) that nanoGPT's `GPT(GPTConfig(**model_args)).load_state_dict`
    takes. Refuses (ConfigError, naming the field) a config nanoGPT cannot express."""
    require_extra("a nanoGPT state dict", "torch", "torch")
    import torch

    sd = {k: torch.from_numpy(v.copy()) for k, v in _export(params, config, False, "nanogpt").items()}
    model_args = dict(n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd,
                      block_size=config.block_size, bias=config.bias, vocab_size=config.vocab_size,
                      dropout=config.dropout)
    return sd, model_args


def from_nanogpt_ckpt(path, **fields) -> tuple[GPTConfig, dict]:
    """(config, params) of a nanoGPT `ckpt.pt` ({"model": state_dict, "model_args": {...}, ...}), loaded with
    `torch.load(weights_only=True)`: tensors and plain data only, no code runs."""
    require_extra(f"reading {path}", "torch", "torch")
    import torch

    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except Exception as e:  # an UnpicklingError for anything but tensors and plain data
        raise CheckpointError(f"{path} is not a loadable nanoGPT checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
        raise CheckpointError(f"{path} is not a nanoGPT ckpt.pt (it needs 'model' and 'model_args')")
    args = ckpt["model_args"]
    c, params = from_nanogpt(ckpt["model"], n_head=int(args["n_head"]), dropout=float(args.get("dropout", 0.0)),
                             **fields)
    for k in ("n_layer", "n_embd", "block_size", "vocab_size"):
        if k in args and int(args[k]) != getattr(c, k):
            raise CheckpointError(f"{path}: model_args {k}={args[k]} but the weights have {k}={getattr(c, k)}")
    return c, params


def save_nanogpt_ckpt(path, params, config: GPTConfig) -> None:
    """Write `params` as a nanoGPT `ckpt.pt` (model, model_args, iter_num 0) that nanoGPT's sample.py reads."""
    require_extra(f"writing {path}", "torch", "torch")
    import torch

    sd, model_args = to_nanogpt(params, config)
    torch.save({"model": sd, "model_args": model_args, "iter_num": 0, "best_val_loss": float("inf")}, Path(path))


# ---------------------------------------------------------------------------------------------------- the lecture

def from_lecture(state_dict: dict, **fields) -> tuple[GPTConfig, dict]:
    """(config, params) from the lecture `gpt.py`'s `GPTLanguageModel.state_dict()`: per-head key/query/value
    (no bias) and their `tril` buffers, `sa.proj`, `ffwd.net.{0,2}`, `ln1`/`ln2`, `ln_f`, an untied `lm_head`."""
    sd = _numpy(state_dict)
    if "token_embedding_table.weight" not in sd:
        raise CheckpointError("not a lecture gpt.py state dict: no token_embedding_table.weight")
    n_layer = _n_layer(sd, r"blocks\.(\d+)\.")
    n_head = _n_layer(sd, r"blocks\.0\.sa\.heads\.(\d+)\.") or 1
    renamed = {"transformer.wte.weight": sd.pop("token_embedding_table.weight"),
               "transformer.wpe.weight": sd.pop("position_embedding_table.weight")}
    names = {"ln1": "ln_1", "ln2": "ln_2", "sa.proj": "attn.c_proj", "ffwd.net.0": "mlp.c_fc",
             "ffwd.net.2": "mlp.c_proj"}
    for i in range(n_layer):
        heads = lambda w: np.concatenate([sd.pop(f"blocks.{i}.sa.heads.{h}.{w}.weight") for h in range(n_head)])
        renamed[f"transformer.h.{i}.attn.c_attn.weight"] = np.concatenate([heads("query"), heads("key"),
                                                                           heads("value")])  # (3C, C)
        for ours, theirs in names.items():
            for p in ("weight", "bias"):
                renamed[f"transformer.h.{i}.{theirs}.{p}"] = sd.pop(f"blocks.{i}.{ours}.{p}")
    for k in list(sd):
        if k.startswith(("ln_f.", "lm_head.")):
            renamed[f"transformer.{k}" if k.startswith("ln_f.") else k] = sd.pop(k)
    c = _gpt2_config(renamed, n_head, **{**dict(bias=True, qkv_bias=False, activation="relu"), **fields})
    if sd:
        raise CheckpointError(f"the lecture state dict holds {len(sd)} tensor(s) gpt.py does not have, e.g. {min(sd)}")
    return c, _import(renamed, c, conv1d=False, where="the lecture state dict")


# ---------------------------------------------------------------------------------------------------- Hugging Face

def from_hf(model_or_dir) -> tuple[GPTConfig, dict]:
    """(config, params) of a transformers `GPT2LMHeadModel` or a directory `save_pretrained` wrote (safetensors)."""
    if isinstance(model_or_dir, (str, Path)):
        require_extra(f"reading {model_or_dir}", "hf", "torch", "transformers")
        from transformers import GPT2LMHeadModel

        if not (Path(model_or_dir) / "config.json").is_file():
            raise CheckpointError(f"{model_or_dir} is not a Hugging Face model directory (no config.json)")
        model_or_dir = GPT2LMHeadModel.from_pretrained(str(model_or_dir))
    hc = model_or_dir.config
    if getattr(hc, "activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        raise CheckpointError(f"activation_function {hc.activation_function!r} has no jaxgpt equivalent "
                              f"(jaxgpt's gelu is GPT-2's tanh approximation, gelu_new)")
    sd = _numpy(model_or_dir.state_dict())
    c = _gpt2_config(sd, hc.n_head, activation="gelu", tie_embeddings=True, bias=True, qkv_bias=True)
    return c, _import(sd, c, conv1d=True, where="the Hugging Face GPT-2 model")


def to_hf(params, config: GPTConfig):
    """A transformers `GPT2LMHeadModel` holding `params` (call `.save_pretrained(dir)` to write safetensors).
    Refuses (ConfigError, naming the field) a config GPT-2's architecture cannot express."""
    require_extra("a Hugging Face GPT2LMHeadModel", "hf", "torch", "transformers")
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    sd = _export(params, config, True, "hf")
    hc = GPT2Config(vocab_size=config.vocab_size, n_positions=config.block_size, n_embd=config.n_embd,
                    n_layer=config.n_layer, n_head=config.n_head, n_inner=config.ffwd_mult * config.n_embd,
                    activation_function="gelu_new", resid_pdrop=config.dropout, embd_pdrop=config.dropout,
                    attn_pdrop=config.dropout, layer_norm_epsilon=1e-5, tie_word_embeddings=True)
    model = GPT2LMHeadModel(hc)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, strict=False)
    assert not unexpected and all(_BUFFERS.search(k) for k in missing), (missing, unexpected)  # the table is GPT-2's
    return model.eval()
