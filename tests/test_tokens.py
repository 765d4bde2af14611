"""Subword tokens: the BPE and file tokenizers, the prepare step (nanoGPT's format), runs on subwords (train, sample,
resume, bits per character) and their bad input. Every run shares one shape (vocab 512), so it compiles once."""
import hashlib
import json
import math
import os
import pickle
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import _runs
from conftest import HEAD_TEXT
from jaxgpt import ngram
from jaxgpt.cli import prepare_main, sample_main, train_main
from jaxgpt.data import CharTokenizer, bits_per_char, load_tokenizer, split_text, train_bpe
from jaxgpt.data.prepare import prepare_data
from jaxgpt.data.tokenizers import split_for_batch
from jaxgpt.errors import ConfigError
from jaxgpt.rundir import Run, prepare
from jaxgpt.config import GPTConfig, TrainConfig

V = 512  # every BPE below: 511 merges-and-bytes + GPT-2's <|endoftext|> for the file, so runs share one shape


@pytest.fixture(scope="module")
def bpe():
    return train_bpe(HEAD_TEXT.read_text(), V)


@pytest.fixture(scope="module")
def gpt2_like(tmp_path_factory):
    """A small tokenizer.json in GPT-2's format: byte-level BPE, GPT-2's pre-tokenizer regex (ByteLevel with
    use_regex), no prefix space, the ByteLevel decoder and post-processor, and <|endoftext|> as the last id."""
    from tokenizers import processors
    tok = train_bpe(HEAD_TEXT.read_text()[:20000], V - 1).tokenizer
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens(["<|endoftext|>"])
    path = tmp_path_factory.mktemp("gpt2") / "tokenizer.json"
    tok.save(str(path))
    return path


@settings(max_examples=60, deadline=None)
@given(st.text())
@example("\r\n\x00 𝄞 ☃ ünïcode ~~ 中文 \t\t")  # NUL, CR, non-BMP and characters the training text never had
def test_bpe_round_trips_any_text(bpe, text):
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert ids.tolist() == bpe.tokenizer.encode(text).ids  # the pieces encode as the whole


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet="ab \n\t\r.'", max_size=400), st.integers(1, 40))
def test_pieces_encode_like_the_whole(bpe, text, size):
    pieces = split_for_batch(text, size)
    assert "".join(pieces) == text
    assert sum((bpe.tokenizer.encode(p).ids for p in pieces), []) == bpe.tokenizer.encode(text).ids


def test_bpe_is_deterministic_and_its_file_loads_in_tokenizers_unchanged(bpe, tmp_path):
    from tokenizers import Tokenizer
    text = HEAD_TEXT.read_text()
    again = train_bpe(text, V)
    assert bpe.vocab_size == V and again.to_json() == bpe.to_json()
    bpe.save(tmp_path / "tokenizer.json")
    theirs = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert theirs.encode(text[:3000]).ids == bpe.encode(text[:3000]).tolist() == again.encode(text[:3000]).tolist()
    loaded = load_tokenizer(tmp_path)  # a folder holding tokenizer.json
    assert loaded.sha256 == bpe.sha256 and loaded.kind == "file"
    assert isinstance(load_tokenizer(_write(tmp_path / "c.json", CharTokenizer("ab\n").to_json())), CharTokenizer)


def test_gpt2_format_file_keeps_its_special_token(gpt2_like):
    tok = load_tokenizer(gpt2_like)
    assert tok.kind == "file" and tok.vocab_size == V
    ids = tok.encode("First Citizen:<|endoftext|>Second")
    assert V - 1 in ids.tolist() and tok.decode(ids) == "First Citizen:<|endoftext|>Second"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_char_prepare_writes_nanogpts_bytes(tmp_path, capsys):
    """nanoGPT's shakespeare_char/prepare.py, reimplemented from its description: sorted characters of the whole
    text, the first 90% of the ids train, uint16 tofile, meta.pkl with vocab_size/itos/stoi."""
    data = HEAD_TEXT.read_text()
    chars = sorted(list(set(data)))
    stoi, itos = {ch: i for i, ch in enumerate(chars)}, {i: ch for i, ch in enumerate(chars)}
    n = len(data)
    ref = tmp_path / "ref"
    ref.mkdir()
    np.array([stoi[c] for c in data[:int(n * 0.9)]], dtype=np.uint16).tofile(ref / "train.bin")
    np.array([stoi[c] for c in data[int(n * 0.9):]], dtype=np.uint16).tofile(ref / "val.bin")
    with open(ref / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": itos, "stoi": stoi}, f)
    out = tmp_path / "char"
    assert prepare_main(["--data", str(HEAD_TEXT), "--out-dir", str(out)]) == 0
    for name in ("train.bin", "val.bin", "meta.pkl"):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    meta = json.loads((out / "meta.json").read_text())
    assert meta["splits"]["val"]["chars"] == n - int(n * 0.9) == meta["splits"]["val"]["tokens"]
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "meta.pkl", "tokenizer.json", "train.bin", "val.bin"]
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert prepare_main(["--data", str(HEAD_TEXT), "--out-dir", str(out)]) == 0  # a rerun: one line, no write
    assert "nothing to do" in capsys.readouterr().out.strip()
    assert before == {p.name: p.stat().st_mtime_ns for p in out.iterdir()}


def test_bpe_prepare_matches_the_tokenizer_and_its_meta(tmp_path):
    from tokenizers import Tokenizer
    text = HEAD_TEXT.read_text()
    meta = prepare_data(str(HEAD_TEXT), tmp_path, "bpe", V, log=lambda *a: None, progress=False)
    train_text, val_text = split_text(text)
    tok = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert tok.encode(train_text).ids == np.fromfile(tmp_path / "train.bin", np.uint16).tolist()
    assert tok.encode(val_text).ids == np.fromfile(tmp_path / "val.bin", np.uint16).tolist()
    assert train_bpe(train_text, V).sha256 == meta["tokenizer"]["sha256"]  # trained on the train split alone
    bins = (tmp_path / "train.bin").read_bytes() + (tmp_path / "val.bin").read_bytes()
    assert meta["tokens_sha256"] == hashlib.sha256(bins).hexdigest() and meta["dtype"] == "uint16"
    assert meta["splits"]["train"]["tokens"] * 2 == (tmp_path / "train.bin").stat().st_size
    assert meta["splits"]["val"]["chars"] == len(val_text) and not list(tmp_path.glob(".*"))


def test_bits_per_char_uses_the_val_texts_characters(tmp_path):
    text = "ünï 𝄞 café.\n" * 300  # 3600 characters, more bytes: the count is of characters
    data = _write(tmp_path / "u.txt", text)
    run = Run(GPTConfig(block_size=8), TrainConfig(tokenizer="bpe", bpe_vocab_size=300), tmp_path / "r", str(data))
    run, tok, train, val = prepare(run)
    assert run.val_chars == 360 and tok.decode(val) == text[3240:]
    assert bits_per_char(1.53, 1, 1) == pytest.approx(2.207, abs=1e-3)
    assert bits_per_char(2.0, len(val), 360) == pytest.approx(2.0 * len(val) / 360 / math.log(2))


@pytest.fixture(scope="module")
def bpe_run(tmp_path_factory):
    """A BPE run straight through _runs.STEPS steps on the first 5000 characters of the test text."""
    d = tmp_path_factory.mktemp("bpe_run")
    data = _runs.text_file(d)
    assert train_main(_runs.argv(data, d / "straight", **BPE_SETS)) == 0
    return data, d / "straight"


def test_saved_bpe_loads_in_transformers_unchanged(bpe, tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is an optional extra: "
                                                              "pip install 'jaxgpt[hf]'")
    bpe.save(tmp_path / "tokenizer.json")
    theirs = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    text = HEAD_TEXT.read_text()[:3000] + "\r\n\x00 𝄞 ünï"  # bytes the training text never had
    ids = bpe.encode(text).tolist()
    assert theirs(text)["input_ids"] == ids and len(theirs) == bpe.vocab_size
    assert theirs.decode(ids) == text


BPE_SETS = dict(tokenizer="bpe", bpe_vocab_size=V, block_size=16)


def test_bpe_run_trains_samples_resumes_exactly(bpe_run, tmp_path, gpt2_like, capsys):
    data, straight = bpe_run
    half = tmp_path / "half"
    assert train_main(_runs.argv(data, half, "--max-iters", str(_runs.STEPS // 2), **BPE_SETS)) == 0
    assert train_main(["--out-dir", str(half), "--resume", "--max-iters", str(_runs.STEPS)]) == 0
    (a, step_a), (b, step_b) = _runs.final_state(half), _runs.final_state(straight)
    assert step_a == step_b == _runs.STEPS
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
    assert _runs.untimed(half)[-1] == _runs.untimed(straight)[-1]  # (the first half ended with a full pass)
    # the run folder's tokenizer is the BPE of the train split's text, in HF's format
    text = data.read_text()
    assert load_tokenizer(straight).sha256 == train_bpe(split_text(text)[0], V).sha256
    records = _runs.records(straight)
    val_chars = len(text) - int(0.9 * len(text))
    n_val = len(load_tokenizer(straight).encode(split_text(text)[1]))
    for r in records:
        assert r["val_bpc"] == pytest.approx(r["val_loss"] * n_val / val_chars / math.log(2), abs=2e-5)
    assert "val_bpc_full" in records[-1]
    capsys.readouterr()
    assert sample_main(["--out-dir", str(straight), "--max-new-tokens", "4", "--prompt", "ROMEO: ünï"]) == 0
    assert "ROMEO: ünï" in capsys.readouterr().out
    # --tokenizer on a resume of a run with another tokenizer: one line, exit 2, nothing touched
    before = {p: p.read_bytes() for p in sorted(half.rglob("*")) if p.is_file()}
    assert train_main(["--out-dir", str(half), "--resume", "--max-iters", "12", "--tokenizer", str(gpt2_like)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not the tokenizer of the run" in err
    assert before == {p: p.read_bytes() for p in sorted(half.rglob("*")) if p.is_file()}


def test_file_tokenizer_run_samples_text(bpe_run, tmp_path, gpt2_like, capsys):
    """--tokenizer PATH: a BPE run's tokenizer.json (the same ids, so the programs compiled for it serve), and the
    GPT-2-format file through the run's data step (its ids include <|endoftext|> where the text has it)."""
    data, straight = bpe_run
    out = tmp_path / "run"
    assert train_main(_runs.argv(data, out, "--tokenizer", str(straight / "tokenizer.json"), "--max-iters", "2",
                                 block_size=16)) == 0
    assert load_tokenizer(out).sha256 == load_tokenizer(straight).sha256
    assert json.loads((out / "config.json").read_text())["train"]["tokenizer"] == "file"
    capsys.readouterr()
    assert sample_main(["--out-dir", str(out), "--max-new-tokens", "4", "--prompt", "KING"]) == 0
    assert "KING" in capsys.readouterr().out
    text = data.read_text()[:4000] + "<|endoftext|>" + data.read_text()[4000:]
    run = Run(GPTConfig(block_size=8), TrainConfig(tokenizer="file"), out, str(_write(tmp_path / "eot.txt", text)),
              tokenizer_file=str(gpt2_like))
    run, tok, train, val = prepare(run)
    assert run.model.vocab_size == V and train.tolist().count(V - 1) == 1
    assert tok.decode(train) == split_text(text)[0] and run.val_chars == len(split_text(text)[1])


@pytest.mark.parametrize("argv, words", [
    (["--tokenizer", "{d}/not_json.json"], ["not_json.json", "not a tokenizer"]),
    (["--tokenizer", "{d}/wrong.json"], ["wrong.json", "not a tokenizer", "model"]),
    (["--tokenizer", "bpe", "--vocab-size", "255"], ["255", "[256, 4294967296]"]),
    (["--tokenizer", "bpe", "--vocab-size", str(2 ** 32 + 1)], ["4294967297", "[256, 4294967296]"]),
    (["--data", "{d}/empty.txt"], ["empty.txt", "is empty"]),
    (["--tokenizer", "{d}/chars.json"], ["chars.json", "character vocabulary"]),
    (["--out-dir", "{readonly}"], ["cannot write into"]),
])
def test_prepare_bad_input_is_one_line_and_writes_nothing(argv, words, tmp_path, capsys):
    d = tmp_path
    _write(d / "not_json.json", "hello")
    _write(d / "wrong.json", '{"characters": "abc"}')
    _write(d / "empty.txt", "")
    _write(d / "chars.json", CharTokenizer("ab").to_json())
    readonly = d / "ro"
    readonly.mkdir()
    os.chmod(readonly, 0o555)
    if os.geteuid() == 0:  # root writes through permissions: a folder no one can write
        readonly = Path("/sys/jaxgpt-prepare")
    argv = ["--data", str(HEAD_TEXT), "--out-dir", str(d / "out")] + \
        [a.format(d=d, readonly=readonly / "tokens") for a in argv]
    before = sorted(d.rglob("*"))
    assert prepare_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("jaxgpt-prepare: error: ")
    assert all(w in err for w in words), err
    assert sorted(d.rglob("*")) == before


@pytest.mark.parametrize("sets, words", [("bpe_vocab_size=255", ["bpe_vocab_size 255", "256"]),
                                         ("tokenizer=wordpiece", ["'wordpiece'", "'bpe'"])])
def test_train_bad_tokenizer_settings(sets, words, tmp_path, capsys):
    assert train_main(["--out-dir", str(tmp_path / "r"), "--set", sets]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(w in err for w in words), err
    assert not (tmp_path / "r").exists()


def test_ngram_ids_refuse_int64_overflow():
    with pytest.raises(ConfigError, match="4096"):
        ngram.gram_ids(np.zeros(10, np.int64), 7, 4096)
    assert ngram.gram_ids(np.array([1, 2, 3]), 2, 4096).tolist() == [4096 + 2, 2 * 4096 + 3]


def test_import_with_a_tokenizer_json(tmp_path, gpt2_like, capsys):
    """python -m jaxgpt import --tokenizer: an imported GPT-2-format model keeps its tokenizer.json, so its output
    decodes to text (sample.py reads it through load_checkpoint)."""
    pytest.importorskip("torch")
    from jaxgpt import interop, load_checkpoint
    from jaxgpt.__main__ import main
    from jaxgpt.model import init_params
    nano = dict(block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.0, bias=False, activation="gelu_exact",
                tie_embeddings=True)
    config = GPTConfig(vocab_size=V + 8, **nano)  # nanoGPT pads GPT-2's vocabulary the same way
    interop.save_nanogpt_ckpt(tmp_path / "ckpt.pt", init_params(config, jax.random.PRNGKey(0)), config)
    assert main(["import", str(tmp_path / "ckpt.pt"), "--tokenizer", str(gpt2_like), "--out-dir",
                 str(tmp_path / "run")]) == 0
    _, _, tok = load_checkpoint(tmp_path / "run")
    assert tok.kind == "file" and tok.sha256 == load_tokenizer(gpt2_like).sha256
    assert tok.decode(tok.encode("KING HENRY<|endoftext|>")) == "KING HENRY<|endoftext|>"
    small = GPTConfig(vocab_size=V - 8, **nano)
    interop.save_nanogpt_ckpt(tmp_path / "small.pt", init_params(small, jax.random.PRNGKey(0)), small)
    capsys.readouterr()
    assert main(["import", str(tmp_path / "small.pt"), "--tokenizer", str(gpt2_like), "--out-dir",
                 str(tmp_path / "run2")]) == 2
    assert f"has {V} tokens but" in capsys.readouterr().err and not (tmp_path / "run2").exists()
