"""A real divergence (an absurd learning rate on a tiny config) stops the run at its first non-finite step with
exit status 1, saves nothing after it, and --resume with a sane learning rate and clipping then finishes."""
import re

import jax
import numpy as np
import pytest

from _runs import STEPS, argv, final_state, records, text_file
from jaxgpt import checkpoint as ckpt
from jaxgpt.cli import train_main
from jaxgpt.errors import NumericalError
from jaxgpt.progress import _check_finite


def test_divergence_stops_at_the_first_bad_step_and_resume_can_fix_it(tmp_path, capsys):
    data, out = text_file(tmp_path), tmp_path / "run"
    assert train_main(argv(data, out, learning_rate=1e30, warmup_iters=0, grad_clip=0.0)) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("train.py")]  # the rest is the progress bar
    assert len(lines) == 1 and lines[0].startswith("train.py: error: ") and "Traceback" not in err, err
    bad = int(re.search(r"diverged at step (\d+): loss", lines[0]).group(1))
    assert 1 <= bad < STEPS
    assert "learning_rate, grad_clip and warmup_iters" in lines[0] and "--resume" in lines[0]
    kept = ckpt.has_checkpoints(out)
    assert kept and max(kept) < bad  # nothing saved at or after the bad step
    assert all(r["step"] < bad for r in records(out))
    state, step = final_state(out)
    assert step == max(kept) and all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state))

    assert train_main(["--out-dir", str(out), "--resume", "--set", "learning_rate=3e-3", "grad_clip=1.0"]) == 0
    assert "learning_rate 1e+30 -> 0.003, grad_clip 0.0 -> 1.0" in capsys.readouterr().err
    final = records(out)[-1]
    assert final["step"] == STEPS and np.isfinite(final["val_loss_full"])


def test_the_check_names_the_first_non_finite_step():
    _check_finite(10, np.array([1.0, 2.0]), np.array([0.5, 0.5]))  # finite: silent
    with pytest.raises(NumericalError, match=r"step 12: loss inf, grad_norm 0.5"):
        _check_finite(10, np.array([1.0, np.inf, np.nan]), np.array([0.5, 0.5, np.nan]))
    with pytest.raises(NumericalError, match=r"step 11: loss 1.0, grad_norm nan"):
        _check_finite(10, np.array([1.0, 2.0]), np.array([np.nan, 0.5]))
