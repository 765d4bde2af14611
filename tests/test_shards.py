"""The shard path (`--data DIR` of token files): nanoGPT's char folder trains and samples like the text it came from,
the loader's stream is a function of (seed, step, row), a SIGKILLed run resumes bit-identical, two processes each
read only their rows and equal one, and bad folders are one line, exit 2, nothing written."""
import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from _runs import STEPS, argv, assert_same_run, records
from conftest import HEAD_TEXT, REPO
from jaxgpt import checkpoint as ckpt
from jaxgpt.cli import sample_main, train_main
from jaxgpt.data.loader import Windows, iterate, take
from jaxgpt.data.tokenfolder import open_token_folder
from test_kill_phases import kill_at
from test_sharding import two_processes


def nanogpt_char_folder(folder: Path, text: str) -> Path:
    """train.bin / val.bin / meta.pkl exactly as nanoGPT's data/shakespeare_char/prepare.py writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted(list(set(text)))
    stoi = {ch: i for i, ch in enumerate(chars)}
    itos = {i: ch for i, ch in enumerate(chars)}
    n = len(text)
    for name, part in (("train", text[:int(n * 0.9)]), ("val", text[int(n * 0.9):])):
        np.array([stoi[c] for c in part], dtype=np.uint16).tofile(folder / f"{name}.bin")
    with open(folder / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": itos, "stoi": stoi}, f)
    return folder


def args(data: Path, out: Path, *extra: str) -> list[str]:
    """_runs.argv without dropout and with float32 Newton-Schulz products, so the 2-process run (4 devices) can equal
    the 1-device one to float32 rounding (`baby`'s bf16 products would round the two runs' gradients, which differ in
    their last bits, to different bf16 values: 2e-5 apart in val loss after 8 steps)."""
    return argv(data, out, *extra, dropout=0.0, muon_ns_dtype="float32")


@pytest.fixture(scope="module")
def text():
    return HEAD_TEXT.read_text()[:5000]


@pytest.fixture(scope="module")
def folder(text, tmp_path_factory):
    return nanogpt_char_folder(tmp_path_factory.mktemp("tokens") / "chars", text)


@pytest.fixture(scope="module")
def straight(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    assert train_main(args(folder, out)) == 0
    return out


def test_nanogpt_char_folder_trains_and_samples_the_same_characters(folder, straight, text, tmp_path, capsys):
    written = json.loads((straight / "config.json").read_text())
    assert written["data_path"] == "shards" and written["model"]["vocab_size"] == len(set(text))
    chars = json.loads((straight / "tokenizer.json").read_text())["chars"]
    assert chars == sorted(set(text))  # the in-memory path's CharTokenizer.from_text of the same text
    last = records(straight)[-1]
    assert last["step"] == STEPS and last["val_full_tokens"] == int(len(text) - int(len(text) * 0.9)) - 1
    capsys.readouterr()
    assert sample_main(["--out-dir", str(straight), "--max-new-tokens", "60", "--prompt", "Fir"]) == 0
    sampled = capsys.readouterr().out.split("\n", 1)[1]  # below the "sample 1/1" rule
    assert sampled.startswith("Fir") and set(sampled.strip()) <= set(text), sampled


def test_same_seed_same_batches_other_seed_others_and_the_stream_resumes(folder):
    tokens = open_token_folder(str(folder), 8)
    win = lambda seed: Windows(tokens, "train", "train", seed, 4, 1, 8, (0, 4))
    a, b, c = (take(iterate(win(s), 0), 3) for s in (1, 1, 2))
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[0], c[0])
    assert np.array_equal(a[1][..., :-1], a[0][..., 1:])  # y is x shifted by one token
    it = iterate(win(1), 0)
    take(it, 2)
    assert it.get_state() == {"next_index": 2}
    assert np.array_equal(take(iterate(win(1), 2), 1)[0][0], a[0][2])  # a restored iterator continues the stream
    half = Windows(tokens, "train", "train", 1, 4, 1, 8, (2, 4))[0][0]  # rows 2, 3 of the same global batch
    assert np.array_equal(half[0], a[0][0, 0, 2:])


def test_kill_mid_run_then_resume_is_bit_identical_with_the_data_stream(folder, straight, tmp_path):
    out = tmp_path / "run"
    assert "'step': 4" in kill_at("saving@4", args(folder, out), tmp_path)
    assert [r["step"] for r in records(out)] == [0, 4]
    if 4 in ckpt.has_checkpoints(out):  # the save the kill met may or may not have completed
        assert ckpt.read_data_state(out, 4) in (None, {"loader": {"next_index": 4}, "process_count": 1})
    assert train_main(["--out-dir", str(out), "--resume"]) == 0
    assert_same_run(out, straight)  # params, Adam moments, step, key; metrics apart from timing
    assert ckpt.read_data_state(out, STEPS) == ckpt.read_data_state(straight, STEPS) == \
        {"loader": {"next_index": STEPS}, "process_count": 1}


def with_meta_json(d: Path, sha: str, dtype: str = "uint16") -> Path:
    """The folder's meta.json and tokenizer.json as docs/data.md describes them (char tokenizer)."""
    meta = pickle.loads((d / "meta.pkl").read_bytes())
    vocab, item = meta["vocab_size"], np.dtype(dtype).itemsize
    (d / "tokenizer.json").write_text(json.dumps({"chars": [meta["itos"][i] for i in range(vocab)]}))
    splits = {name: {"file": f"{name}.bin", "tokens": os.path.getsize(d / f"{name}.bin") // item}
              for name in ("train", "val")}
    (d / "meta.json").write_text(json.dumps({
        "format": "jaxgpt-tokens", "version": 1, "dtype": dtype, "vocab_size": vocab, "splits": splits,
        "tokenizer": {"kind": "char", "vocab_size": vocab, "file": "tokenizer.json"}, "tokens_sha256": sha}))
    return d


def test_resume_with_changed_data_warns_as_on_the_in_memory_path(text, tmp_path, capsys):
    """The identity is meta.json's tokens_sha256 (the files are never hashed); a change is the in-memory path's
    warning, and the run goes on."""
    mine = with_meta_json(nanogpt_char_folder(tmp_path / "mine", text), "a" * 64)
    out = tmp_path / "run"
    first = args(mine, out)
    first[first.index("--max-iters") + 1] = "4"
    assert train_main(first) == 0
    with_meta_json(mine, "b" * 64)
    capsys.readouterr()
    assert train_main(["--out-dir", str(out), "--resume", "--max-iters", "6"]) == 0
    printed = capsys.readouterr().out
    assert f"warning: data {str(mine)!r} differs from the data step 4 was trained on" in printed


def _bad(folder: Path, case: str) -> Path:
    d = folder.parent / f"bad-{case}"
    nanogpt_char_folder(d, HEAD_TEXT.read_text()[:2000])
    vocab = pickle.loads((d / "meta.pkl").read_bytes())["vocab_size"]
    if case == "odd":
        (d / "train.bin").write_bytes((d / "train.bin").read_bytes()[:-1])
    elif case == "id":
        np.concatenate([np.fromfile(d / "train.bin", np.uint16), [vocab]]).astype(np.uint16).tofile(d / "train.bin")
    elif case == "dtype":  # meta.json counts uint16 ids but says uint32: the file's size cannot be that
        for name in ("train", "val"):
            whole = (d / f"{name}.bin").read_bytes()
            (d / f"{name}.bin").write_bytes(whole[:len(whole) // 4 * 4])
        with_meta_json(d, "0" * 64)
        meta = json.loads((d / "meta.json").read_text())
        (d / "meta.json").write_text(json.dumps({**meta, "dtype": "uint32"}))
    elif case == "short":
        np.fromfile(d / "val.bin", np.uint16)[:5].tofile(d / "val.bin")
    elif case == "nometa":
        (d / "meta.pkl").unlink()
    elif case == "noval":  # nanoGPT's meta.pkl beside train.bin only
        (d / "val.bin").unlink()
    return d


@pytest.mark.parametrize("case, message", [
    ("odd", "not a multiple of 2 for uint16"), ("id", "not below the vocabulary of"),
    ("dtype", "does not match the file"), ("short", "fewer than one window"), ("nometa", "no meta.json or meta.pkl"),
    ("noval", "has no val.bin")])
def test_bad_token_folders_are_one_line_exit_2_nothing_written(folder, case, message, tmp_path, capsys):
    d = _bad(folder, case)
    before = {p: p.read_bytes() for p in d.iterdir()}
    capsys.readouterr()
    assert train_main(args(d, tmp_path / "out")) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0], err
    assert not (tmp_path / "out").exists() and {p: p.read_bytes() for p in d.iterdir()} == before


WORKER = """import json, sys
sys.path.insert(0, {tests!r})
from jaxgpt.data import loader
reads, get = [], loader.Windows.__getitem__
def logged(self, step):
    reads.append([self.stream, int(step), self.global_rows().tolist()])
    return get(self, step)
loader.Windows.__getitem__ = logged
from jaxgpt.cli import train_main
status = train_main(sys.argv[2:])
json.dump(reads, open(sys.argv[1], "w"))
sys.exit(status)
"""


def test_two_processes_read_only_their_rows_equal_one_and_resume_in_one(folder, straight, tmp_path):
    """4 devices in 2 processes, batch 4: each process reads rows of its 2 devices, the result is the 1-device run,
    and a --resume with 1 process continues the same stream (resharded, docs/data.md)."""
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER.format(tests=str(REPO / "tests")))
    two_processes(lambda i: [sys.executable, str(worker), str(tmp_path / f"reads{i}.json"),
                             *args(folder, tmp_path / "two")])
    reads = [json.loads((tmp_path / f"reads{i}.json").read_text()) for i in range(2)]
    for i, mine in enumerate(reads):  # rows 0-1 are process 0's, rows 2-3 process 1's, in every stream
        assert {tuple(rows) for stream, _, rows in mine} == {(2 * i, 2 * i + 1)}
        assert set(range(STEPS)) <= {step for stream, step, _ in mine if stream == "train"}  # (and prefetched)
    for a, b in zip(records(straight), records(tmp_path / "two"), strict=True):
        for key in ("train_loss", "val_loss", "val_loss_full"):
            assert abs(a.get(key, 0) - b.get(key, 0)) <= 1.01e-5, (key, a, b)
    # --resume in 1 process from the 2 processes' checkpoint reshards the stream: the same batches as 1 process
    import shutil
    shutil.copytree(straight, tmp_path / "one")
    for out in ("one", "two"):
        assert train_main(["--out-dir", str(tmp_path / out), "--resume", "--max-iters", str(STEPS + 2)]) == 0
    assert ckpt.read_data_state(tmp_path / "two", STEPS + 2) == {"loader": {"next_index": STEPS + 2},
                                                                 "process_count": 1}
    a, b = records(tmp_path / "one")[-1], records(tmp_path / "two")[-1]
    assert a["step"] == b["step"] == STEPS + 2 and abs(a["train_loss"] - b["train_loss"]) <= 1.01e-5, (a, b)


def test_a_bpe_folder_from_prepare_trains_samples_and_resumes_with_its_own_tokenizer(text, tmp_path, capsys):
    """jaxgpt-prepare's BPE folder on the shard path: the folder's tokenizer.json is the run's (kept in the run folder,
    loadable by `tokenizers`), bits per character use meta.json's validation characters, and a resume on a folder
    with another tokenizer is one line, exit 2."""
    from tokenizers import Tokenizer

    from jaxgpt.data.prepare import prepare_data
    src = tmp_path / "text.txt"
    src.write_text(text)
    meta = prepare_data(str(src), tmp_path / "bpe", tokenizer="bpe", vocab_size=300, progress=False, log=lambda *a: 0)
    out = tmp_path / "run"
    assert train_main(args(tmp_path / "bpe", out, "--max-iters", "4")) == 0
    written = json.loads((out / "config.json").read_text())
    assert written["train"]["tokenizer"] == "bpe" and written["data_path"] == "shards"
    assert written["model"]["vocab_size"] == meta["vocab_size"] <= 300
    hf = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert hf.encode("ROMEO:").ids == Tokenizer.from_file(str(tmp_path / "bpe" / "tokenizer.json")).encode("ROMEO:").ids
    last = records(out)[-1]
    val = meta["splits"]["val"]
    assert last["val_bpc_full"] == pytest.approx(last["val_loss_full"] * val["tokens"] / val["chars"] / np.log(2),
                                                 abs=2e-5)
    capsys.readouterr()
    assert sample_main(["--out-dir", str(out), "--max-new-tokens", "8", "--prompt", "ROMEO:"]) == 0
    assert "ROMEO:" in capsys.readouterr().out
    other = prepare_data(str(src), tmp_path / "bpe2", tokenizer="bpe", vocab_size=290, progress=False,
                         log=lambda *a: 0)
    assert other["tokenizer"]["sha256"] != meta["tokenizer"]["sha256"]
    (tmp_path / "bpe").rename(tmp_path / "bpe-before")  # the run's --data now holds another tokenizer's ids
    (tmp_path / "bpe2").rename(tmp_path / "bpe")
    before = sorted(p.name for p in out.rglob("*"))
    assert train_main(["--out-dir", str(out), "--resume", "--max-iters", "8"]) == 2
    assert "different tokenizer" in capsys.readouterr().err.strip().splitlines()[-1]
    assert sorted(p.name for p in out.rglob("*")) == before
