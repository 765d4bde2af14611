"""The lecture's ladder presets: one switch per step on the intermediate setting; bench/ladder.py's table."""
import importlib.util
from dataclasses import asdict, replace

import jax
import pytest

from conftest import REPO
from jaxgpt.presets import LADDER, PRESETS
from jaxgpt import build_model, count_params, init_params


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
                     {"residual", "ffwd_mult", "proj"}, {"layer_norm"}, {"dropout"}]
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


# What each step of the lecture adds to its code (the video's bigram -> gpt.py path at 32 wide, block 8, 4 heads)
LECTURE_STEPS = {
    "ladder-bigram": {},
    "ladder-pos": dict(pos=True),
    "ladder-head": dict(pos=True, sa="head"),                  # self.sa_head = Head(n_embd)
    "ladder-multihead": dict(pos=True, sa="heads"),            # self.sa_heads = MultiHeadAttention(4, n_embd // 4)
    "ladder-ffwd": dict(pos=True, sa="heads", ffwd=True),      # FeedFoward: Linear(n_embd, n_embd), ReLU
    "ladder-blocks": dict(pos=True, blocks=3),                 # Block: x = sa(x); x = ffwd(x)
    "ladder-residual": dict(pos=True, blocks=3, residual=True),  # + proj in sa and ffwd, ffwd 4 * n_embd
    "ladder-layernorm": dict(pos=True, blocks=3, residual=True, ln=True),  # + ln1, ln2, ln_f
    "ladder-dropout": dict(pos=True, blocks=3, residual=True, ln=True),    # dropout adds no parameters
}


def _lecture_params(pos=False, sa=None, ffwd=False, blocks=0, residual=False, ln=False, vocab=65, C=32, T=8, H=4):
    """The parameters of the lecture's nn.Modules at one step, built in PyTorch as the video writes them."""
    torch = pytest.importorskip("torch", reason="torch is an optional extra: pip install 'jaxgpt[torch]'")
    nn = torch.nn

    def head(hs):
        return nn.ModuleDict(dict(key=nn.Linear(C, hs, bias=False), query=nn.Linear(C, hs, bias=False),
                                  value=nn.Linear(C, hs, bias=False)))

    def multi_head(proj):
        return nn.ModuleDict(dict(heads=nn.ModuleList([head(C // H) for _ in range(H)]),
                                  **(dict(proj=nn.Linear(C, C)) if proj else {})))

    def feed_forward(proj):
        return nn.Sequential(nn.Linear(C, 4 * C), nn.ReLU(), nn.Linear(4 * C, C)) if proj else \
            nn.Sequential(nn.Linear(C, C), nn.ReLU())

    def block():
        return nn.ModuleDict(dict(sa=multi_head(residual), ffwd=feed_forward(residual),
                                  **(dict(ln1=nn.LayerNorm(C), ln2=nn.LayerNorm(C)) if ln else {})))

    parts = dict(token_embedding_table=nn.Embedding(vocab, C), lm_head=nn.Linear(C, vocab))
    parts.update(dict(position_embedding_table=nn.Embedding(T, C)) if pos else {})
    parts.update(dict(sa_head=head(C)) if sa == "head" else dict(sa_heads=multi_head(False)) if sa == "heads" else {})
    parts.update(dict(ffwd=feed_forward(False)) if ffwd else {})
    parts.update(dict(blocks=nn.Sequential(*[block() for _ in range(blocks)])) if blocks else {})
    parts.update(dict(ln_f=nn.LayerNorm(C)) if ln else {})
    return sum(p.numel() for p in nn.ModuleDict(parts).parameters())


def test_each_step_has_the_lecture_modules_parameter_count():
    counts = {name: _lecture_params(**LECTURE_STEPS[name]) for name in LADDER[:-1]}
    assert counts["ladder-bigram"] == 4225 and counts["ladder-ffwd"] == 8609 and counts["ladder-blocks"] == 16865
    assert counts["ladder-residual"] == 41921 and counts["ladder-layernorm"] == 42369
    assert {name: _params(name) for name in counts} == counts


def test_feed_forward_step_computes_what_the_lecture_code_computes():
    """ladder-ffwd's logits against the lecture's model at that step (4 heads of 8 concatenated, no projection;
    FeedFoward = Linear, ReLU), in PyTorch with the same weights."""
    torch = pytest.importorskip("torch", reason="torch is an optional extra: pip install 'jaxgpt[torch]'")
    import numpy as np
    from torch_models import Head

    c = replace(PRESETS["ladder-ffwd"].model, vocab_size=11)
    p = jax.tree.map(np.asarray, init_params(c, jax.random.PRNGKey(1)))
    C, H, hs = c.n_embd, c.n_head, c.head_size
    t = lambda a: torch.from_numpy(np.array(a))  # a writable copy
    tok, pos = torch.nn.Embedding(11, C), torch.nn.Embedding(c.block_size, C)
    heads = [Head(C, hs, c.block_size, 0.0) for _ in range(H)]
    ffwd, lm_head = torch.nn.Sequential(torch.nn.Linear(C, C), torch.nn.ReLU()), torch.nn.Linear(C, 11)
    with torch.no_grad():
        tok.weight.copy_(t(p["token_embedding_table"]["embedding"]))
        pos.weight.copy_(t(p["position_embedding_table"]["embedding"]))
        qkv = p["blocks"]["sa"]["qkv"]["kernel"][0]  # (C, 3, H, hs): query, key, value
        for h, head in enumerate(heads):
            for i, lin in enumerate((head.query, head.key, head.value)):
                lin.weight.copy_(t(qkv[:, i, h].T))
        ffwd[0].weight.copy_(t(p["blocks"]["ffwd"]["fc"]["kernel"][0].T))
        ffwd[0].bias.copy_(t(p["blocks"]["ffwd"]["fc"]["bias"][0]))
        lm_head.weight.copy_(t(p["lm_head"]["kernel"].T))
        lm_head.bias.copy_(t(p["lm_head"]["bias"]))
        idx = np.random.default_rng(0).integers(0, 11, (2, c.block_size))
        x = tok(t(idx)) + pos(torch.arange(c.block_size))
        x = ffwd(torch.cat([head(x) for head in heads], dim=-1))  # the lecture's forward at this step
        want = lm_head(x).numpy()
    got = np.asarray(build_model(c).apply({"params": p}, idx.astype(np.int32))[0])
    np.testing.assert_allclose(got, want, atol=1e-5)
