"""sample.py and load_checkpoint: what they print and write, what they read, and their one-line errors.

The checkpoints here are written straight through `checkpoint.save` from a freshly initialised tiny model (no
training needed to test loading and sampling); three steps with different val losses make --step and --best visible.
"""
import re
import shutil
from dataclasses import replace

import jax
import numpy as np
import pytest

from conftest import HEAD_TEXT, TINY, TINY_TRAIN
from jaxgpt import checkpoint as ckpt
from jaxgpt import load_checkpoint, sampling
from jaxgpt.cli import sample_main
from jaxgpt.data import CharTokenizer
from jaxgpt.training import create_state, make_keys

VAL_LOSSES = {0: 2.0, 1: 1.0, 2: 3.0}  # step 1 is the best, step 2 the newest


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    text = HEAD_TEXT.read_text()[:20000]
    tok = CharTokenizer.from_text(text)
    mc = replace(TINY, vocab_size=tok.vocab_size)
    out = tmp_path_factory.mktemp("sample") / "run"
    state = jax.jit(create_state, static_argnums=(0, 1))(mc, TINY_TRAIN)
    with ckpt.manager(out, keep=3) as mgr:
        for step, loss in VAL_LOSSES.items():
            params = jax.tree.map(lambda p: p + step, state.params)  # different params at each step
            ckpt.save(mgr, state.replace(params=params, step=state.step + step),
                      ckpt.run_meta(mc, TINY_TRAIN, tok, preset="", data="x"), loss)
            mgr.wait_until_finished()
    return out


def bodies(out: str) -> list[str]:
    """The samples (or beams) printed between the header rules, without the newline that ends each."""
    return [b[:-1] for b in re.split(r"-{16} (?:sample|beam) [^\n]*-{16}\n", out)[1:]]


STD = ["--prompt", "ROMEO:", "--max-new-tokens", 20, "--num-samples", 2]  # one shape: generate compiles once


def sample(capsys, *argv):
    rc = sample_main([*map(str, argv)])
    return rc, *capsys.readouterr()


def test_samples_are_separated_reproducible_and_start_with_the_prompt(run_dir, capsys):
    argv = ["--out-dir", run_dir, *STD, "--temperature", 0.8, "--top-k", 40]
    rc, out, err = sample(capsys, *argv, "--seed", 7)
    assert rc == 0 and not err and "sample 2/2" in out
    again = sample(capsys, *argv, "--seed", 7)[1]
    other = sample(capsys, *argv, "--seed", 8)[1]
    assert again == out and other != out
    texts = bodies(out)
    assert len(texts) == 2 and all(t.startswith("ROMEO:") and len(t) == len("ROMEO:") + 20 for t in texts), texts


def test_out_file_holds_what_would_be_printed(run_dir, capsys, tmp_path):
    argv = ["--out-dir", run_dir, *STD, "--temperature", 0.8, "--top-k", 40, "--seed", 1]
    printed = sample(capsys, *argv)[1]
    rc, out, _ = sample(capsys, *argv, "--out", tmp_path / "s.txt")
    assert rc == 0 and out.strip() == f"wrote 2 sample(s) to {tmp_path / 's.txt'}"
    assert (tmp_path / "s.txt").read_text() == printed


@pytest.mark.parametrize("argv, words", [
    (["--prompt", "ROMEO: é ẞ"], ["'é'", "'ẞ'", "not in the vocabulary"]),
    (["--step", "7"], ["step 7", "available steps: 0, 1, 2"]),
    (["--step", "-1"], ["--step -1"]),
    (["--temperature", "0"], ["--temperature 0.0", "--greedy"]),
    (["--temperature", "-1"], ["--temperature -1.0"]),
    (["--top-k", "0"], ["--top-k 0", "1..58"]),
    (["--top-k", "59"], ["--top-k 59", "1..58"]),
    (["--top-p", "1.5"], ["--top-p 1.5"]),
    (["--max-new-tokens", "0"], ["--max-new-tokens 0"]),
    (["--greedy", "--temperature", "0.5"], ["--greedy", "--temperature"]),
    (["--beams", "2", "--top-k", "3"], ["--beams", "--top-k"]),
    (["--step", "1", "--best"], ["--best"]),
])
def test_bad_input_is_one_line_exit_2(argv, words, run_dir, capsys):
    rc, out, err = sample(capsys, "--out-dir", run_dir, "--max-new-tokens", 5, *argv)
    assert rc == 2 and err.startswith("sample.py: error: ") and err.count("\n") == 1 and not out
    assert all(w in err for w in words), err


def test_missing_or_empty_out_dir(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for d, words in (("missing", "does not exist"), ("empty", "holds no checkpoints")):
        rc, out, err = sample(capsys, "--out-dir", tmp_path / d)
        assert rc == 2 and err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "missing").exists()


def test_reads_params_only(run_dir, tmp_path, capsys):
    """With every optimizer state deleted from disk, loading and sampling still work."""
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    for step in VAL_LOSSES:
        shutil.rmtree(out / ckpt.CKPT_DIR / str(step) / "train")
    config, params, tokenizer = load_checkpoint(out)
    assert config.vocab_size == tokenizer.vocab_size == 58 and config.n_layer == TINY.n_layer
    assert sample(capsys, "--out-dir", out, *STD, "--temperature", 0.8, "--top-k", 40)[0] == 0


def test_latest_step_and_best(run_dir):
    first = jax.tree.leaves(load_checkpoint(run_dir, step=0)[1])
    offset = lambda params: {float(np.mean(x - y)) for x, y in zip(jax.tree.leaves(params), first)}
    assert offset(load_checkpoint(run_dir)[1]) == {2.0}               # newest
    assert offset(load_checkpoint(run_dir, best=True)[1]) == {1.0}    # lowest val loss


def test_greedy_ignores_the_seed_and_matches_generate(run_dir, capsys):
    argv = ["--out-dir", run_dir, *STD, "--greedy"]
    a, b = sample(capsys, *argv, "--seed", 1)[1], sample(capsys, *argv, "--seed", 2)[1]
    mc, params, tok = load_checkpoint(run_dir)
    prompt = np.repeat(tok.encode("ROMEO:")[None, :].astype(np.int32), 2, 0)
    want = sampling.generate(params, mc, prompt, 20, make_keys(0)["sample"], temperature=0.0)
    assert a == b and bodies(a) == [tok.decode(row) for row in want]


def test_stream_and_beams(run_dir, capsys):
    """--stream prints each sample as generate_stream yields it (test_sampling checks the chunks equal generate);
    --beams W prints W distinct beams, best first."""
    rc, out, _ = sample(capsys, "--out-dir", run_dir, *STD, "--stream", "--seed", 3)
    texts = bodies(out)
    assert rc == 0 and len(texts) == 2 and texts[0] != texts[1]
    assert texts == bodies(sample(capsys, "--out-dir", run_dir, *STD, "--seed", 3)[1])  # streaming keeps the text
    assert all(t.startswith("ROMEO:") and len(t) == len("ROMEO:") + 20 for t in texts)
    rc, out, _ = sample(capsys, "--out-dir", run_dir, "--prompt", "ROMEO:", "--max-new-tokens", 20, "--beams", 3)
    logprobs = [float(line.rsplit(" ", 2)[-2]) for line in out.splitlines() if "beam " in line]
    assert rc == 0 and len(logprobs) == 3 and logprobs == sorted(logprobs, reverse=True)
    assert len(set(bodies(out))) == 3 and all(b.startswith("ROMEO:") and len(b) == 26 for b in bodies(out))


def test_keeps_latest_n_plus_best(run_dir, tmp_path):
    """keep=1: the newest step stays, and so does the lowest val loss; a step saved without one (Ctrl-C) goes."""
    mc, params, tok = load_checkpoint(run_dir)
    state = jax.jit(create_state, static_argnums=(0, 1))(mc, TINY_TRAIN)
    with ckpt.manager(tmp_path, keep=1) as mgr:
        for step, loss in enumerate([3.0, 1.0, None, 2.0, 2.5]):
            ckpt.save(mgr, state.replace(step=state.step + step), ckpt.run_meta(mc, TINY_TRAIN, tok), loss)
            mgr.wait_until_finished()
    assert ckpt.has_checkpoints(tmp_path) == [1, 4]
