"""notebooks/colab_tpu.ipynb runs top to bottom on a CPU with only its parameter cell changed."""
import json

import pytest

from conftest import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = REPO / "notebooks" / "colab_tpu.ipynb"


def tiny_parameters(data, out_dir) -> str:
    return "\n".join([
        'PRESET = "baby"',
        "MAX_ITERS = 6",
        'SET = ["n_layer=1", "n_head=2", "n_embd=32", "block_size=16", "batch_size=8", "eval_interval=3", '
        '"eval_iters=2", "ckpt_interval=3", "steps_per_call=3", "sample_chars=0"]',
        f"DATA = {str(data)!r}",
        f"OUT_DIR = {str(out_dir)!r}",
        "SAMPLE_CHARS = 40",
        "JAXGPT_SOURCE = None",
    ])


def test_colab_notebook_executes_on_cpu(tmp_path, small_text, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")  # the kernel's compiles take half the time
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "the notebook needs exactly one cell tagged 'parameters'"
    colab = params[0].source
    for name in ("PRESET", "MAX_ITERS", "SET", "DATA", "OUT_DIR", "SAMPLE_CHARS", "JAXGPT_SOURCE"):
        assert f"{name} = " in colab  # the tiny cell below sets the same names, nothing more
    params[0].source = tiny_parameters(small_text, tmp_path / "out")

    nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the loss curve was not plotted"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "1 cpu device(s)" in text and "MFU will not be reported" in text
    runs = list((tmp_path / "out").iterdir())
    assert len(runs) == 1
    records = [json.loads(line) for line in (runs[0] / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 3, 6]
    sample = "".join(o.get("text", "") for o in nb.cells[-1].outputs)  # SAMPLE_CHARS characters and a newline
    assert len(sample) == 41
