"""The lecture's ladder presets: one switch per step on the intermediate setting; bench/ladder.py's table."""
import importlib.util
from dataclasses import asdict, replace

import jax

from conftest import REPO
from jaxgpt.presets import LADDER, PRESETS
from jaxgpt import count_params, init_params


def _params(name):
    c = replace(PRESETS[name].model, vocab_size=65)
    return count_params(jax.eval_shape(lambda k: init_params(c, k), jax.random.PRNGKey(0)))


def test_each_step_changes_what_the_lecture_changes():
    steps = [PRESETS[n] for n in LADDER[:-1]]
    for p in steps:
        t = p.train
        setting = (t.batch_size, p.model.block_size, p.model.n_embd, t.learning_rate, t.max_iters)
        assert setting == (32, 8, 32, 1e-3, 5000)
    diffs = []
    for a, b in zip(steps, steps[1:]):
        da, db = asdict(a.model), asdict(b.model)
        diffs.append({k for k in da if da[k] != db[k]})
    assert diffs == [{"pos_embedding"}, {"n_layer", "n_head"}, {"n_head"}, {"ffwd"}, {"n_layer"},
                     {"residual", "ffwd_mult"}, {"layer_norm"}, {"dropout"}]
    assert LADDER[-1] == "lecture"
    # 65 x 32 embedding + 32 x 65 lm_head + bias = 4,225; 4 heads of 8 have the same weights as one head of 32
    assert _params("ladder-bigram") == 65 * 32 + 32 * 65 + 65
    assert _params("ladder-head") == _params("ladder-multihead")


def test_babygpt_is_about_24k_parameters():
    assert 22_000 <= _params("babygpt") <= 26_000


def test_markdown_table_labels_the_reduced_step(tmp_path):
    spec = importlib.util.spec_from_file_location("ladder", REPO / "bench" / "ladder.py")
    ladder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ladder)
    row = dict(doc="d", params=1, iters=5000, eval_iters=200, val_loss_full=2.0, val_loss=2.0, train_loss=2.0,
               wall_s=1.0)
    rows = [{**row, "step": "ladder-multihead"}, {**row, "step": "lecture", "iters": 10, "eval_iters": 4}]
    ladder.write_markdown(rows, tmp_path / "l.md", "python bench/ladder.py")
    text = (tmp_path / "l.md").read_text()
    assert "| 2.28 |" in text and "reduced: 10 of 5000 iterations" in text and "`python bench/ladder.py`" in text
    (tmp_path / "l.md").write_text(text + "## The notebooks\n\nmeasured by hand\n")
    ladder.write_markdown(rows[:1], tmp_path / "l.md", "python bench/ladder.py")  # regenerated: the table changes
    text = (tmp_path / "l.md").read_text()
    assert "reduced: 10" not in text and text.endswith("## The notebooks\n\nmeasured by hand\n")
