"""jaxgpt.interop against PyTorch: the lecture's gpt.py, nanoGPT's GPT and a tiny Hugging Face GPT2LMHeadModel."""
import os
import pickle
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is an optional extra: pip install 'jaxgpt[torch]'")

from jaxgpt import interop, runimport  # noqa: E402
from jaxgpt.config import GPTConfig, TrainConfig  # noqa: E402
from jaxgpt.errors import CheckpointError, ConfigError  # noqa: E402
from jaxgpt.model import build_model, init_params  # noqa: E402
from jaxgpt.training import create_state, train_steps  # noqa: E402

from conftest import REPO  # noqa: E402
from torch_models import GPT, GPTLanguageModel, NanoGPTConfig  # noqa: E402

SIZES = dict(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=32)
CHARS = sorted(set("hello world\n"))  # the ckpt.pt tests' vocabulary
# the model of the three ckpt.pt tests: one init program and one sampling program for all of them
CKPT_MODEL = GPTConfig(**{**SIZES, "vocab_size": len(CHARS)}, bias=False, qkv_bias=False, activation="gelu_exact",
                       tie_embeddings=True, dropout=0.1)


def _write_meta(path):
    """nanoGPT's shakespeare_char meta.pkl (what its prepare.py writes: vocab_size, itos, stoi) for CHARS."""
    path.write_bytes(pickle.dumps({"vocab_size": len(CHARS), "itos": dict(enumerate(CHARS)),
                                   "stoi": {c: i for i, c in enumerate(CHARS)}}))
    return path


def _randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (biases and LayerNorms too, which init leaves at 0 / 1), so parity tests them all."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return module.eval()


def _idx(seed=0, B=3):
    return np.random.default_rng(seed).integers(0, SIZES["vocab_size"], (B, SIZES["block_size"])).astype(np.int32)


def _jax_logits(config, params, idx):
    return np.asarray(build_model(config).apply({"params": params}, jnp.asarray(idx))[0])


def _torch_logits(module, idx):
    with torch.no_grad():
        t = torch.from_numpy(idx.astype(np.int64))
        return module(t, t)[0].numpy()  # targets given: every position's logits (nanoGPT returns the last otherwise)


def test_lecture_state_dict_logits_match():
    module = _randomize(GPTLanguageModel(**{k: SIZES[k] for k in ("vocab_size", "n_embd", "block_size", "n_head",
                                                                   "n_layer")}))
    sd = module.state_dict()
    assert "blocks.1.sa.heads.1.query.weight" in sd and "blocks.0.sa.heads.0.tril" in sd
    config, params = interop.from_lecture(sd)
    assert (config.n_head, config.activation, config.tie_embeddings, config.qkv_bias) == (2, "relu", False, False)
    idx = _idx()
    np.testing.assert_allclose(_jax_logits(config, params, idx), _torch_logits(module, idx), atol=1e-5, rtol=0)


@pytest.mark.parametrize("bias,flash,compiled", [(False, True, True), (True, False, False)])
def test_nanogpt_logits_match_and_round_trip_is_exact(bias, flash, compiled):
    module = _randomize(GPT(NanoGPTConfig(**SIZES, bias=bias, flash=flash)))
    sd = module.state_dict()
    assert ("transformer.h.0.attn.bias" in sd) == (not flash)  # the mask buffer of older nanoGPT versions
    if compiled:  # what a torch.compile'd model's state_dict looks like
        sd = {f"_orig_mod.{k}": v for k, v in sd.items()}
    config, params = interop.from_nanogpt(sd, n_head=SIZES["n_head"])
    assert (config.bias, config.activation, config.tie_embeddings) == (bias, "gelu_exact", True)
    idx = _idx(1)
    np.testing.assert_allclose(_jax_logits(config, params, idx), _torch_logits(module, idx), atol=1e-5, rtol=0)

    # jaxgpt -> nanoGPT -> jaxgpt is exact, and nanoGPT's GPT loads the export strictly
    back_sd, model_args = interop.to_nanogpt(params, config)
    fresh = GPT(NanoGPTConfig(**model_args, flash=True))
    fresh.load_state_dict(back_sd, strict=True)
    config2, params2 = interop.from_nanogpt(fresh.state_dict(), n_head=model_args["n_head"])
    assert config2 == config
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), params, params2)


def test_nanogpt_ckpt_pt_with_model_args(tmp_path):
    config = CKPT_MODEL
    params = init_params(config, jax.random.PRNGKey(3))
    interop.save_nanogpt_ckpt(tmp_path / "ckpt.pt", params, config)
    config2, params2 = interop.from_nanogpt_ckpt(tmp_path / "ckpt.pt")
    assert config2 == config  # dropout read from model_args
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), params, params2)


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_untrusted_files_run_no_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "meta.pkl"
    evil.write_bytes(pickle.dumps({"vocab_size": 2, "itos": {0: "a", 1: "b"}, "x": _RunsACommand(marker)}))
    with pytest.raises(CheckpointError, match="refused to load .*system"):
        runimport.load_meta_pkl(evil)
    torch.save({"model": {}, "model_args": {"n_head": 1}, "x": _RunsACommand(marker)}, tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match="not a loadable nanoGPT checkpoint"):
        interop.from_nanogpt_ckpt(tmp_path / "ckpt.pt")
    assert not marker.exists()
    assert runimport.load_meta_pkl(_write_meta(tmp_path / "good.pkl")).chars == CHARS  # the genuine article


def _tiny_gpt2():
    transformers = pytest.importorskip("transformers", reason="transformers is an optional extra: "
                                                              "pip install 'jaxgpt[hf]'")
    hc = transformers.GPT2Config(vocab_size=SIZES["vocab_size"], n_positions=SIZES["block_size"],
                                 n_embd=SIZES["n_embd"], n_layer=SIZES["n_layer"], n_head=SIZES["n_head"],
                                 resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    return _randomize(transformers.GPT2LMHeadModel(hc))


def test_hf_gpt2_logits_match_and_round_trip_is_exact(tmp_path):
    hf = _tiny_gpt2()
    hf.save_pretrained(tmp_path / "hf")
    assert (tmp_path / "hf" / "model.safetensors").is_file()
    config, params = interop.from_hf(tmp_path / "hf")
    idx = _idx(2)
    with torch.no_grad():
        want = hf(torch.from_numpy(idx.astype(np.int64))).logits.numpy()
    np.testing.assert_allclose(_jax_logits(config, params, idx), want, atol=1e-5, rtol=0)

    interop.to_hf(params, config).save_pretrained(tmp_path / "back")
    config2, params2 = interop.from_hf(tmp_path / "back")
    assert config2 == config
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), params, params2)


@pytest.mark.parametrize("fmt,field,value", [("hf", "pos_embedding", "sinusoidal"), ("hf", "tie_embeddings", False),
                                             ("nanogpt", "activation", "relu"), ("hf", "layer_norm", False),
                                             ("nanogpt", "lora_rank", 4)])
def test_export_refuses_what_the_format_cannot_express(fmt, field, value):
    base = GPTConfig(**SIZES, tie_embeddings=True, activation="gelu" if fmt == "hf" else "gelu_exact",
                     qkv_bias=True)
    config = replace(base, **{field: value})
    with pytest.raises(ConfigError, match=f"^{field}={value!r} cannot be expressed in the {fmt} format"):
        interop.check_exportable(config, fmt)
    interop.check_exportable(base, fmt)  # the base itself is fine


def test_training_parity_with_pytorch_200_steps():
    """nanoGPT's GPT and jaxgpt from the same converted weights, fed jaxgpt's batches of Tiny Shakespeare's head:
    AdamW, constant lr, no clipping, no decay, dropout 0, float32; the losses agree within 1e-3 at every step.
    bias=False (nanoGPT's shakespeare_char setting): with bias=True jaxgpt's tied head carries a trainable
    lm_head_bias that nanoGPT does not have."""
    from jaxgpt.data import CharTokenizer, sample_batch

    text = (REPO / "tests" / "data" / "tinyshakespeare_head.txt").read_text(encoding="utf-8")
    tokenizer = CharTokenizer.from_text(text)
    n_steps, B, T = 200, 8, SIZES["block_size"]
    torch.manual_seed(1)
    module = GPT(NanoGPTConfig(**{**SIZES, "vocab_size": tokenizer.vocab_size}, bias=False, flash=True))
    config, params = interop.from_nanogpt(module.state_dict(), n_head=SIZES["n_head"])
    tc = TrainConfig(batch_size=B, learning_rate=1e-3, max_iters=n_steps, weight_decay=0.0, beta2=0.99)
    data = jnp.asarray(tokenizer.encode(text), jnp.int32)
    state = create_state(config, tc, params)
    _, metrics = jax.jit(train_steps, static_argnums=(2, 3, 4))(state, data, config, tc, n_steps)
    jax_losses = np.asarray(metrics["loss"])

    @jax.jit
    def batches(key):  # train_step's batch: micro-batch 0 of split(fold_in(key, step))[0]
        keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.split(jax.random.fold_in(key, s))[0], 0))(
            jnp.arange(n_steps))
        return jax.vmap(lambda k: sample_batch(data, k, batch_size=B, block_size=T))(keys)

    xs, ys = (torch.from_numpy(np.asarray(a, np.int64)) for a in batches(state.key))  # (n_steps, B, T) each
    opt = torch.optim.AdamW(module.parameters(), lr=tc.learning_rate, betas=(tc.beta1, tc.beta2), eps=1e-8,
                            weight_decay=0.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: torch's worker threads only spin against jax on a small machine
    try:
        torch_losses = []
        for x, y in zip(xs, ys):
            _, loss = module(x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            torch_losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(jax_losses, torch_losses, atol=1e-3, rtol=0)
    assert jax_losses[-1] < jax_losses[0] - 1.0  # it trained (4.06 -> 2.76 on 2026-12-01)


def test_import_command_makes_a_run_folder_that_samples(tmp_path, capsys, caplog):
    import logging

    from jaxgpt.__main__ import main

    caplog.set_level(logging.WARNING, logger="absl")  # as in a fresh process, whatever earlier tests set

    meta = _write_meta(tmp_path / "meta.pkl")
    config = CKPT_MODEL
    interop.save_nanogpt_ckpt(tmp_path / "ckpt.pt", init_params(config, jax.random.PRNGKey(0)), config)

    assert main(["import", str(tmp_path / "ckpt.pt"), "--out-dir", str(tmp_path / "run")]) == 2
    assert "no tokenizer: pass --meta meta.pkl" in capsys.readouterr().err  # says what is missing
    assert main(["import", str(tmp_path / "ckpt.pt"), "--meta", str(meta), "--out-dir", str(tmp_path / "run")]) == 0
    assert capsys.readouterr().err == "" and not [r.getMessage() for r in caplog.records], caplog.records  # quiet
    assert main(["sample", "--out-dir", str(tmp_path / "run"), "--prompt", "hello", "--max-new-tokens", "8",
                 "--greedy"]) == 0
    out = capsys.readouterr().out
    assert "hello" in out and len(out.split("hello", 1)[1].strip("\n")) > 0
    # train.py --init-from reads the same folder through the same load_params (tests/test_checkpoint.py covers that
    # path); not trained here to keep this file within its time share


def test_ckpt_pt_read_in_place_by_sample_and_init_from(tmp_path, capsys, monkeypatch):
    """sample.py --out-dir ckpt.pt and train.py --init-from ckpt.pt (its state built from the file's weights), with
    nanoGPT's meta.pkl beside it; without it the command says what is missing (one line, exit 2)."""
    from jaxgpt import loop
    from jaxgpt.cli import sample_main, train_main

    text = tmp_path / "input.txt"
    text.write_text("hello world\n" * 300)
    assert sorted(set(text.read_text())) == CHARS
    config = CKPT_MODEL
    params = init_params(config, jax.random.PRNGKey(4))
    interop.save_nanogpt_ckpt(tmp_path / "ckpt.pt", params, config)
    source = str(tmp_path / "ckpt.pt")
    assert sample_main(["--out-dir", source, "--max-new-tokens", "4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "meta.pkl" in err, err
    _write_meta(tmp_path / "meta.pkl")
    assert sample_main(["--out-dir", source, "--prompt", "hello", "--max-new-tokens", "8", "--greedy"]) == 0
    text_of_file = capsys.readouterr().out
    assert "hello" in text_of_file
    # nanoGPT's habit: the out folder that holds ckpt.pt and meta.pkl (sample.py --out_dir=out-shakespeare-char)
    assert sample_main(["--out-dir", str(tmp_path), "--prompt", "hello", "--max-new-tokens", "8", "--greedy"]) == 0
    assert capsys.readouterr().out == text_of_file
    source = str(tmp_path)  # train.py --init-from takes the folder too
    out = tmp_path / "run"

    class Built(BaseException):  # train_main lets it by, as a test hook's stop
        pass

    def stop(run, state, *rest):  # the run built and placed its state: stop before its steps compile (they are
        raise Built(state)        # every run's, tested elsewhere)
    monkeypatch.setattr(loop, "_steps", stop)
    with pytest.raises(Built) as built:
        train_main(["--init-from", source, "--out-dir", str(out), "--data", str(text), "--max-iters", "2",
                    "--set", "batch_size=4", "eval_interval=2", "eval_iters=1", "steps_per_call=2"])
    assert f"initialised from {source} step 0" in capsys.readouterr().out
    first = built.value.args[0]
    assert int(first.step) == 0 and (out / "config.json").is_file()
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(params)))
