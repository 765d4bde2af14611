"""The README's Python blocks run as written, in order, in one namespace: the docs cannot rot."""
import importlib.util
import re
import shutil

import pytest

import jaxgpt
from conftest import REPO


def test_readme_python_blocks_run(capsys, tmp_path, monkeypatch):
    try:  # the README trains on the whole Tiny Shakespeare: JAXGPT_DATA_DIR, the cache, or a download
        jaxgpt.load_text("tinyshakespeare")
    except jaxgpt.DataError as e:
        pytest.skip(f"the README's example needs the whole Tiny Shakespeare: {e}")
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)
    assert blocks, "README.md has no python blocks"
    shutil.copytree(REPO / "tests" / "fixtures" / "v0_gpt_run", tmp_path / "out" / "baby")  # load_checkpoint's run
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    have_torch = importlib.util.find_spec("torch") is not None
    for block in blocks:
        if block.startswith("# needs torch") and not have_torch:
            continue  # the interop example: torch is an optional extra (CI installs it)
        exec(compile(block, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "parameters" in printed and "val loss (full pass)" in printed
    assert namespace["logits"].shape == (1, 6, namespace["config"].vocab_size)  # the load_checkpoint block ran
