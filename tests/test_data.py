"""Tokenizer, loaders (file, URL, hf:, tinyshakespeare), split, on-device batches, full-pass windows."""
import http.server
import json
import threading

import jax
import numpy as np
import pytest

from jaxgpt.data import CharTokenizer, DataError, eval_windows, load_text, sample_batch, train_val_split


def test_tokenizer_round_trip_and_json():
    text = "First Citizen:\nBefore we proceed any further, hear me speak."
    tok = CharTokenizer.from_text(text)
    assert tok.chars == sorted(set(text))
    ids = tok.encode(text)
    assert ids.dtype == np.uint8 and tok.decode(ids) == text
    again = CharTokenizer.from_json(tok.to_json())
    assert again.chars == tok.chars and again.decode(again.encode(text)) == text


def test_unknown_characters_name_them():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"'x'.*'z'|'z'.*'x'") as e:
        tok.encode("abxcz")
    assert not isinstance(e.value, KeyError)


def test_token_dtype_is_smallest_that_fits():
    assert CharTokenizer([chr(i) for i in range(256)]).dtype == np.uint8
    assert CharTokenizer([chr(i) for i in range(257)]).dtype == np.uint16


def test_tinyshakespeare_comes_from_data_dir(shakespeare_path):
    text = load_text("tinyshakespeare")
    assert len(text) == 1_115_394 and CharTokenizer.from_text(text).vocab_size == 65


def test_local_file_and_non_utf8(tmp_path):
    good = tmp_path / "a.txt"
    good.write_text("héllo", encoding="utf-8")
    assert load_text(str(good)) == "héllo"
    bad = tmp_path / "b.txt"
    bad.write_bytes("héllo".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_text(str(bad))
    with pytest.raises(DataError, match="missing.txt"):
        load_text(str(tmp_path / "missing.txt"))


def test_url_is_downloaded_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXGPT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "t.txt").write_text("to be or not to be", encoding="utf-8")
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp_path / "www"), **kw)

        def log_message(self, *a):
            hits.append(a)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/t.txt"
        assert load_text(url) == "to be or not to be"
        assert load_text(url) == "to be or not to be"
        assert len(hits) == 1  # the second read came from the cache
        assert not list((tmp_path / "cache").rglob("*.part"))  # atomic: no partial file left
        with pytest.raises(DataError, match="cannot download"):
            load_text(f"http://127.0.0.1:{server.server_address[1]}/missing.txt")
    finally:
        server.shutdown()


def test_hf_loader_reads_a_local_dataset_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    folder = tmp_path / "ds"
    folder.mkdir()
    rows = [{"id": i, "text": line} for i, line in enumerate(["alpha beta", "gamma", "delta epsilon"])]
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    assert load_text(f"hf:{folder}") == "alpha beta\ngamma\ndelta epsilon"
    with pytest.raises(DataError, match="cannot load Hugging Face dataset"):
        load_text(f"hf:{tmp_path / 'nope'}")


def test_split_is_90_10_and_rejects_short_texts():
    tokens = np.arange(1000, dtype=np.uint16)
    train, val = train_val_split(tokens, block_size=8)
    assert len(train) == 900 and len(val) == 100 and val[0] == 900
    with pytest.raises(DataError, match="val split has 10 tokens"):
        train_val_split(np.arange(100), block_size=16)


def test_sample_batch_targets_are_inputs_shifted(tiny):
    data = jax.numpy.arange(200, dtype=jax.numpy.uint8)
    x, y = sample_batch(data, jax.random.PRNGKey(3), batch_size=4, block_size=tiny.block_size)
    assert x.shape == y.shape == (4, tiny.block_size) and x.dtype == jax.numpy.int32
    np.testing.assert_array_equal(np.asarray(x[:, 1:]), np.asarray(y[:, :-1]))
    np.testing.assert_array_equal(np.asarray(y - x), 1)


def test_eval_windows_score_every_target_once():
    tokens = np.arange(1, 38, dtype=np.uint8)  # 36 targets, block 8 -> 5 windows, 4 padded slots
    x, y, w = eval_windows(tokens, 8)
    assert x.shape == (5, 8) and w.sum() == 36
    np.testing.assert_array_equal(y[w > 0], tokens[1:])
    np.testing.assert_array_equal(x[w > 0], tokens[:-1])
