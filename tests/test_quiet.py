"""Library calls print nothing a user did not ask for, and still warn about what matters."""
import shutil

import pytest

import jaxgpt
from conftest import REPO

RUN = REPO / "tests" / "fixtures" / "v0_gpt_run"


def test_load_checkpoint_is_quiet_and_warns_on_fallback(tmp_path, capfd, caplog):
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    config, params, tokenizer = jaxgpt.load_checkpoint(run)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "") and not [r for r in caplog.records if r.levelname == "WARNING"], (out, err)

    shutil.rmtree(run / "checkpoints" / "6" / "meta")  # the newest step loses its metadata
    with pytest.warns(UserWarning, match="checkpoint step 6 .*falling back"):
        jaxgpt.load_checkpoint(run)
    assert capfd.readouterr() == ("", "")
