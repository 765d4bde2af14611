"""Count-based character n-gram models: trained by counting (numpy, no gradients), scored by cross-entropy.

A k-gram is stored as one int64 id, its tokens read as base-V digits (w_1 w_2 ... w_k); each order keeps its
distinct ids sorted with their counts, so a 5-gram table over 65 characters holds ~0.5M entries instead of the
65^5 = 1.2e9 cells of a dense array. Context statistics come from the same sorted ids (context = id // V).

Smoothing:
- add_alpha: P(w | h) = (c(h w) + alpha) / (c(h) + alpha V) with the full n-1 character context h.
- kneser_ney: interpolated modified Kneser-Ney (Chen & Goodman 1998, section 3): absolute discounts D1, D2, D3+
  per order estimated from counts of counts, lower orders counted by distinct left contexts, interpolated down to
  the uniform distribution.
"""
from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from .errors import ConfigError

FILE = "ngram.npz"  # what an n-gram run writes into its out-dir instead of checkpoints


def gram_ids(tokens: np.ndarray, k: int, V: int) -> np.ndarray:
    """ids of the len(tokens) - k + 1 k-grams; the k-gram starting at s is entry s. (N - k + 1,) int64.
    ConfigError when V^k does not fit int64 (4096^7 would wrap around silently)."""
    NGramModel.check_order(k, V)
    tokens = np.asarray(tokens, np.int64)
    ids = np.zeros(len(tokens) - k + 1, np.int64)
    for j in range(k):
        ids = ids * V + tokens[j:len(tokens) - k + 1 + j]
    return ids


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """values[key == query], 0 where the query is not among the sorted keys."""
    if len(keys) == 0:
        return np.zeros(query.shape, values.dtype)
    i = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where(keys[i] == query, values[i], 0)


def _discounts(counts: np.ndarray) -> np.ndarray:
    """Chen & Goodman's D1, D2, D3+ from the numbers of k-grams seen exactly 1..4 times (0.5 where undefined)."""
    n1, n2, n3, n4 = (float(np.sum(counts == i)) for i in (1, 2, 3, 4))
    if min(n1, n2, n3, n4) == 0:
        return np.array([0.5, 0.5, 0.5])
    y = n1 / (n1 + 2 * n2)
    d = np.array([1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3])
    return np.clip(d, 0.0, np.array([1.0, 2.0, 3.0]))


class NGramModel:
    """An order-n count model over V symbols; `tables[k-1]` = (sorted k-gram ids, counts) for k = 1..n."""

    def __init__(self, n: int, V: int, tables: list[tuple[np.ndarray, np.ndarray]], smoothing: str = "kneser_ney",
                 alpha: float = 0.05):
        self.n, self.V, self.tables, self.smoothing, self.alpha = n, V, tables, smoothing, alpha
        self.ctx = []  # per order: sorted context ids, total count, and the numbers of words seen 1, 2, 3+ times
        for keys, counts in tables:
            ctx, start = np.unique(keys // V, return_index=True)
            if len(keys) == 0:
                self.ctx.append((ctx, *(np.zeros(0) for _ in range(4))))
                continue
            per = lambda a: np.add.reduceat(a.astype(np.float64), start)
            self.ctx.append((ctx, per(counts), per(counts == 1), per(counts == 2), per(counts >= 3)))
        self.discounts = [_discounts(counts) for _, counts in tables]

    @staticmethod
    def check_order(n: int, V: int) -> None:
        if V ** n >= 2 ** 63:
            raise ConfigError(f"n {n} is too large for a vocabulary of {V}: ids need V^n < 2^63, so n <= "
                              f"{int(63 / np.log2(V))}")

    @classmethod
    def fit(cls, tokens: np.ndarray, V: int, n: int, smoothing: str = "kneser_ney", alpha: float = 0.05):
        """Count every k-gram of `tokens` for k = 1..n (Kneser-Ney: lower orders count distinct left contexts)."""
        cls.check_order(n, V)
        raw = [np.unique(gram_ids(tokens, k, V), return_counts=True) for k in range(1, n + 1)]
        if smoothing == "kneser_ney":
            tables = [np.unique(raw[k][0] % V ** k, return_counts=True) for k in range(1, n)] + [raw[-1]]
        else:
            tables = raw
        return cls(n, V, [(keys, counts.astype(np.int64)) for keys, counts in tables], smoothing, alpha)

    def prob(self, grams: list[np.ndarray], valid: list[np.ndarray | bool]) -> np.ndarray:
        """P(w | h) for each query: grams[k-1] holds the k-gram ids (h's last k-1 tokens, then w), valid[k-1]
        says where that much context exists (shorter contexts fall back to lower orders)."""
        V = self.V
        if self.smoothing == "add_alpha":
            p = np.full(grams[0].shape, 1.0 / V)
            for (keys, counts), (ctx, total, *_), g, ok in zip(self.tables, self.ctx, grams, valid):
                pk = (_lookup(keys, counts, g) + self.alpha) / (_lookup(ctx, total, g // V) + self.alpha * V)
                p = np.where(ok, pk, p)  # the highest order with a full context wins
            return p
        p = np.full(grams[0].shape, 1.0 / V)  # order 0: uniform
        for (keys, counts), (ctx, total, n1, n2, n3), d, g, ok in zip(self.tables, self.ctx, self.discounts,
                                                                     grams, valid):
            h = g // V
            c = _lookup(keys, counts, g).astype(np.float64)
            tot = _lookup(ctx, total, h)
            disc = np.where(c >= 3, d[2], np.where(c == 2, d[1], np.where(c == 1, d[0], 0.0)))
            gamma = d[0] * _lookup(ctx, n1, h) + d[1] * _lookup(ctx, n2, h) + d[2] * _lookup(ctx, n3, h)
            safe = np.maximum(tot, 1.0)
            pk = np.maximum(c - disc, 0.0) / safe + gamma / safe * p
            p = np.where(ok & (tot > 0), pk, p)
        return p

    def cross_entropy(self, tokens: np.ndarray) -> float:
        """Mean -log P of tokens[1:], each with up to n-1 preceding tokens as context (as evaluate_full scores)."""
        tokens = np.asarray(tokens, np.int64)
        N = len(tokens)
        j = np.arange(1, N)  # target positions
        grams, valid = [], []
        for k in range(1, self.n + 1):
            ids = np.zeros(N - 1, np.int64)
            ok = j >= k - 1
            ids[ok] = gram_ids(tokens, k, self.V)[j[ok] - k + 1]
            grams.append(ids)
            valid.append(ok)
        return float(-np.mean(np.log(self.prob(grams, valid))))

    def next_probs(self, context: list[int]) -> np.ndarray:
        """P(. | context) over the vocabulary, from the last n-1 tokens of `context`. (V,)"""
        w = np.arange(self.V, dtype=np.int64)
        grams, valid = [], []
        for k in range(1, self.n + 1):
            h = 0
            for t in context[len(context) - (k - 1):] if k > 1 else []:
                h = h * self.V + int(t)
            grams.append(h * self.V + w)
            valid.append(len(context) >= k - 1)
        return self.prob(grams, valid)

    def generate(self, context: list[int], max_new_tokens: int, rng: np.random.Generator,
                 temperature: float = 1.0) -> list[int]:
        out = list(context)
        for _ in range(max_new_tokens):
            p = self.next_probs(out)  # sums to 1 up to rounding (tested)
            if temperature == 0:
                out.append(int(np.argmax(p)))
                continue
            logp = np.log(p) / temperature
            p = np.exp(logp - logp.max())
            out.append(int(rng.choice(self.V, p=p / p.sum())))
        return out

    def save(self, path: Path) -> None:
        arrays = {f"keys{k}": keys for k, (keys, _) in enumerate(self.tables, 1)}
        arrays |= {f"counts{k}": counts for k, (_, counts) in enumerate(self.tables, 1)}
        meta = json.dumps({"n": self.n, "V": self.V, "smoothing": self.smoothing, "alpha": self.alpha})
        np.savez_compressed(path, meta=np.array(meta), **arrays)

    @classmethod
    def load(cls, path: Path) -> "NGramModel":
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            tables = [(z[f"keys{k}"], z[f"counts{k}"]) for k in range(1, meta["n"] + 1)]
        return cls(meta["n"], meta["V"], tables, meta["smoothing"], meta["alpha"])


def rng_from_key(key) -> np.random.Generator:
    """A numpy generator seeded by a jax key, so n-gram sampling follows the run's seed like the neural models."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())

