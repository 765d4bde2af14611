"""The notebooks' install cell in Colab: it finds the wheel README's command builds (`python -m pip wheel . -w dist
--no-deps`), uploaded beside the notebook, and pip accepts the requirement it writes (checked with --dry-run: the
test environment is left as it is). The `notebooks` extra holds what executing them needs."""
import json
import shutil
import subprocess
import sys
import tomllib

import pytest

from conftest import REPO

NOTEBOOKS = ("gpt_from_scratch", "attention", "colab_tpu")


def _cells(name):
    nb = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())
    params = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    install = nb["cells"][nb["cells"].index(params) + 1]
    return "".join(params["source"]), "".join(install["source"])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """jaxgpt's wheel, built once from a copy of the sources (the build leaves nothing in the worktree)."""
    pytest.importorskip("setuptools", reason="the build backend (pyproject.toml), used here without isolation")
    src, dist = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "jaxgpt", src / "jaxgpt", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "-w", str(dist), "--no-deps", "--no-build-isolation",
                    "-q"], cwd=src, check=True)
    (built,) = dist.glob("jaxgpt-*.whl")
    return built


def _run_install_cell(name, folder, monkeypatch) -> list[str]:
    """The install cell with the committed parameter, in `folder` (Colab's /content), jaxgpt not installed: the
    pip command it runs."""
    params, install = _cells(name)
    ran = []
    monkeypatch.chdir(folder)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: ran.append(cmd))
    exec(params, namespace := {})
    exec(install, namespace)
    return ran


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_install_cell_finds_the_uploaded_wheel(name, wheel, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="pip wheel . -w dist --no-deps"):  # nothing uploaded: says how
        _run_install_cell(name, tmp_path, monkeypatch)
    shutil.copy(wheel, tmp_path / wheel.name)
    (cmd,) = _run_install_cell(name, tmp_path, monkeypatch)
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"] and cmd[-1].endswith(f"@ {(tmp_path / wheel.name).as_uri()}")
    if name == "gpt_from_scratch":  # pip takes that requirement (the other two differ only in the extra's name)
        monkeypatch.undo()
        dry = subprocess.run([*cmd[:4], "--dry-run", "--no-deps", "--no-index", "--ignore-installed", cmd[-1]],
                             capture_output=True, text=True)
        assert dry.returncode == 0 and "Would install jaxgpt-0.1.0" in dry.stdout, dry.stdout + dry.stderr


def test_notebooks_extra_holds_what_executing_them_needs():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {req.split(">")[0].split("=")[0].split("[")[0] for req in extras["notebooks"]}
    assert {"nbconvert", "nbclient", "ipykernel", "matplotlib"} <= names, names
