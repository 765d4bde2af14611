"""The lecture notebooks run top to bottom on a CPU with only their parameter cell made small, and learn.

notebooks/gpt_from_scratch.ipynb and notebooks/attention.ipynb: every code cell ran without an error, the
pictures were drawn, and every training run's printed losses fall from one evaluation to the next, as the
lecture's do.
"""
import re

import pytest

from conftest import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

HEAD_TEXT = REPO / "tests" / "data" / "tinyshakespeare_head.txt"

SMALL = {
    "gpt_from_scratch": {"DATA": repr(str(HEAD_TEXT)), "BIGRAM_ITERS": "20", "LADDER_ITERS": "20",
                         "EVAL_INTERVAL": "10", "EVAL_ITERS": "4", "SAMPLE_CHARS": "40", "JAXGPT_SOURCE": "None"},
    "attention": {"REVERSAL_ITERS": "150", "PRINT_EVERY": "50", "HELD_OUT": "200", "JAXGPT_SOURCE": "None"},
}
LOSS_LINE = re.compile(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)$", re.M)


def execute(name, tmp_path, monkeypatch):
    """The notebook run with its parameter cell replaced by SMALL[name] (the same names, nothing more)."""
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")  # the kernel's compiles take half the time
    nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and nb.cells.index(params[0]) == 1, "the second cell, and only it, is tagged 'parameters'"
    names = re.findall(r"^(\w+) = ", params[0].source, re.M)
    assert sorted(names) == sorted(SMALL[name]), names
    params[0].source = "\n".join(f"{k} = {v}" for k, v in SMALL[name].items())
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "a code cell did not run"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    return text, images


def runs_of(text):
    """The printed loss lines cut into runs, each starting at step 0: [[(step, train, val), ...], ...]."""
    runs = []
    for step, train, val in LOSS_LINE.findall(text):
        if int(step) == 0:
            runs.append([])
        runs[-1].append((int(step), float(train), float(val)))
    return runs


def test_gpt_from_scratch_runs_and_every_step_learns(tmp_path, monkeypatch):
    text, images = execute("gpt_from_scratch", tmp_path, monkeypatch)
    assert images >= 3  # one head's weights, the four heads' maps, the loss curves
    runs = runs_of(text)
    assert len(runs) == 8  # bigram and the seven ladder steps trained here
    for run in runs:
        assert [s for s, _, _ in run] == [0, 10, 20]
        for (_, tr0, va0), (_, tr1, va1) in zip(run, run[1:]):
            assert tr1 < tr0 and va1 < va0, run
    assert "loop == matrix product: True | == masked softmax: True" in text
    assert "zero queries == version 2: True" in text and "by hand == jaxgpt.Head: True" in text
    assert "logits of one batch: (64, 256," in text


def test_attention_notebook_runs_and_reversal_learns(tmp_path, monkeypatch):
    text, images = execute("attention", tmp_path, monkeypatch)
    assert images >= 5  # dot-product, multi-head, cross, spatial, the trained cross-attention
    losses = [float(v) for v in re.findall(r"^step \d+: loss ([\d.]+)$", text, re.M)]
    assert len(losses) == 3 and all(b < a for a, b in zip(losses, losses[1:])), losses
    assert "encoder sees the future: True, decoder does not: True" in text
