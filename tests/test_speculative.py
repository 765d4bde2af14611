"""Speculative sampling: exactly the GPT's distribution (a chi-square test that also rejects a wrong rule), greedy
equal to greedy `generate`, the same key -> the same text, and refusals (another vocabulary, a batch, no cache).

The chi-square cases sample the first two new tokens of a vocabulary-4 GPT many times with a bigram count draft
fitted to a skewed text (so q is far from p), and compare the counts with the GPT's exact joint distribution,
enumerated with full forwards and `token_probs` (temperature and top-k included).
"""
import shutil
from argparse import Namespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxgpt import speculative
from jaxgpt.cli import sample_main
from jaxgpt.config import GPTConfig
from jaxgpt.data import CharTokenizer
from jaxgpt.drafts import generator, load_draft
from jaxgpt.errors import ConfigError, UsageError
from jaxgpt.model import build_model, init_params
from jaxgpt.ngram import NGramModel
from jaxgpt.sampling import generate, token_probs
from jaxgpt.speculative import GPTDraft, NGramDraft, speculative_generate

from conftest import REPO, TINY

SMALL = GPTConfig(vocab_size=4, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0, init_std=0.6)
PROMPT = np.array([[2, 0]], np.int32)
N_SAMPLES, N_TOKENS = 800, 2  # joint of the first two new tokens: 16 cells
FIXTURES = REPO / "tests" / "fixtures"


def skewed_draft(V: int, seed: int = 0) -> NGramDraft:
    """A bigram count model of a text mostly made of token 0: deliberately unlike the GPT."""
    probs = np.r_[0.6, np.full(V - 1, 0.4 / (V - 1))]
    return NGramDraft(NGramModel.fit(np.random.default_rng(seed).choice(V, 400, p=probs), V, 2, "add_alpha", 0.5))


@pytest.fixture(scope="module")
def small_params():
    return init_params(SMALL, jax.random.PRNGKey(5))


def exact_joint(params, strategy: dict, n: int = N_TOKENS) -> np.ndarray:
    """P(first n new tokens) of the GPT under `strategy`, by enumeration: (V,) * n."""
    model, V = build_model(SMALL), SMALL.vocab_size
    last = jax.jit(lambda idx: token_probs(model.apply({"params": params}, idx)[0][:, -1], **strategy))
    joint = np.ones([1] * 0)
    for j in range(n):
        prefixes = np.array(list(np.ndindex(*(V,) * j)), np.int32).reshape(V ** j, j)
        idx = np.concatenate([np.repeat(PROMPT, V ** j, 0), prefixes], axis=1)
        cond = np.asarray(last(jnp.asarray(idx)), np.float64).reshape((V,) * j + (V,))
        joint = joint[..., None] * cond
    return joint


def chi_square_p(params, strategy: dict, k: int) -> float:
    V = SMALL.vocab_size
    counts = np.zeros((V,) * N_TOKENS)
    draft, key = skewed_draft(V), jax.random.PRNGKey(11)
    for i in range(N_SAMPLES):
        out, _ = speculative_generate(params, SMALL, PROMPT, N_TOKENS, jax.random.fold_in(key, i), draft, k=k,
                                      **strategy)
        counts[tuple(out[0, -N_TOKENS:])] += 1
    want = exact_joint(params, strategy) * N_SAMPLES
    if counts[want == 0].sum():  # a token the strategy excludes (top-k) was sampled
        return 0.0
    big = want >= 5  # cells with a small expectation are pooled into one
    obs = np.r_[counts[big], counts[~big & (want > 0)].sum()]
    exp = np.r_[want[big], want[~big & (want > 0)].sum()]
    keep = exp > 0
    return float(stats.chisquare(obs[keep], exp[keep] * obs.sum() / exp[keep].sum()).pvalue)


CASES = [(dict(temperature=0.7), 3), (dict(temperature=1.4, top_k=2), 2)]


@pytest.mark.parametrize("strategy,k", CASES)
def test_first_tokens_follow_the_gpt(small_params, strategy, k):
    assert chi_square_p(small_params, strategy, k) > 1e-3


def test_the_chi_square_test_rejects_always_accept(small_params, monkeypatch):
    monkeypatch.setattr(speculative, "_accepts", lambda u, p_d, q_d: jnp.ones(u.shape, bool))
    speculative._verify.clear_cache()  # it was traced with the real rule
    try:
        assert chi_square_p(small_params, *CASES[0]) < 1e-6
    finally:
        monkeypatch.undo()
        speculative._verify.clear_cache()


def tiny_params():
    return init_params(TINY, jax.random.PRNGKey(3))


def test_greedy_with_a_draft_is_greedy_without():
    n_new = 20  # prompt 3 + 20 > block_size 16: speculative rounds, then the exact cached and window steps
    params, prompt = tiny_params(), np.array([[1, 2, 3]], np.int32)
    want = np.asarray(generate(params, TINY, prompt, n_new, jax.random.PRNGKey(0), temperature=0.0))
    for draft in (skewed_draft(TINY.vocab_size), GPTDraft(params, TINY)):  # the GPT as its own draft: all accepted
        got, st = speculative_generate(params, TINY, prompt, n_new, jax.random.PRNGKey(1), draft, k=3,
                                       temperature=0.0)
        diff = np.flatnonzero(got[0] != want[0])
        if diff.size:  # allowed only at a near tie of the GPT's logits at the first difference
            logits = build_model(TINY).apply({"params": params}, jnp.asarray(want[:, :diff[0]]))[0][0, -1]
            top2 = np.sort(np.asarray(logits))[-2:]
            assert top2[1] - top2[0] < 1e-4, (diff, top2)
        assert st.rounds >= 1 and st.fallback > 0
        assert isinstance(draft, NGramDraft) or st.accepted == st.drafted or diff.size


def test_same_key_same_text_and_keys_matter():
    params, prompt, draft = tiny_params(), np.array([[4]], np.int32), skewed_draft(TINY.vocab_size)
    run = lambda seed: speculative_generate(params, TINY, prompt, 18, jax.random.PRNGKey(seed), draft, k=4,
                                            temperature=0.9, top_p=0.9)[0]
    a, b, c = run(0), run(0), run(1)
    assert a.shape == (1, 19) and np.array_equal(a, b) and not np.array_equal(a, c)
    programs = speculative._verify._cache_size(), speculative._draft_pick._cache_size()
    speculative_generate(params, TINY, prompt, 18, jax.random.PRNGKey(0), draft, k=4, temperature=0.5, top_k=3)
    assert (speculative._verify._cache_size(), speculative._draft_pick._cache_size()) == programs  # no recompile


def test_refusals():
    params, prompt = tiny_params(), np.array([[1]], np.int32)
    with pytest.raises(ConfigError, match="vocabulary"):
        speculative_generate(params, TINY, prompt, 4, jax.random.PRNGKey(0), skewed_draft(5))
    with pytest.raises(UsageError, match=r"\(1, T\)"):
        speculative_generate(params, TINY, np.ones((2, 1), np.int32), 4, jax.random.PRNGKey(0), skewed_draft(11))
    with pytest.raises(UsageError, match="k 16"):
        speculative_generate(params, TINY, prompt, 4, jax.random.PRNGKey(0), skewed_draft(11), k=16)


def test_sample_cli_with_an_ngram_draft(tmp_path, capsys):
    gpt, counts = tmp_path / "gpt", tmp_path / "ngram"
    shutil.copytree(FIXTURES / "v0_gpt_run", gpt)
    shutil.copytree(FIXTURES / "v0_ngram_run", counts)
    args = ["--out-dir", str(gpt), "--prompt", "ROMEO:", "--max-new-tokens", "12", "--seed", "3"]
    assert sample_main(args + ["--draft", str(counts)]) == 0
    out, err = capsys.readouterr()
    assert out.count("ROMEO:") == 1 and "drafted tokens accepted" in err
    with pytest.raises(UsageError, match="--draft samples one sequence at a time; drop --num-samples"):
        generator(Namespace(draft=counts, beams=None, stream=False, num_samples=2), None)
    tokenizer = CharTokenizer.from_json((counts / "tokenizer.json").read_text())
    with pytest.raises(ConfigError, match="is not the model's"):  # another character at one id
        load_draft(counts, CharTokenizer([c if c != "z" else "~" for c in tokenizer.chars]))
    assert isinstance(load_draft(counts, tokenizer), NGramDraft)
