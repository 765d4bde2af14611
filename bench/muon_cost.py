"""Muon's cost per training step: the preset's Muon (jaxgpt's own Newton-Schulz, unrolled, per leaf, wide matrices
in Gram form; `baby`'s products from bf16 inputs) against the same with float32 or bf16 products
(`muon_ns_dtype`), the plain iteration on every matrix (jaxgpt's before the Gram form), optax's Newton-Schulz
(jaxgpt's before 2026-12-07: a lax.scan over a per-step table such as Polar Express's) and Newton-Schulz batched by
matrix shape (`baby`: 2 batched calls, 16 x 128x128 and 8 x 128x512, instead of 4, one per leaf;
tests/test_muon_batched.py checks these equal jaxgpt's within 1e-5; these three with float32 products), all against
AdamW, on the same preset, interleaved in one process (issue 24).

    python bench/muon_cost.py                        # baby: the preset's, f32 and bf16 NS, plain, optax's, batched
    python bench/muon_cost.py --only float32         # baby (bf16 products) against f32 products and AdamW
    python bench/muon_cost.py --only no_ns           # baby against baby without Newton-Schulz and AdamW
    python bench/muon_cost.py --preset baby --repeats 9 --set scan_layers=true

Each variant is its own fresh `jax.jit` of `training.train_steps` (the others traced while `optim.newton_schulz` is
swapped for `plain_newton_schulz` or `normalised_only`, or `optim.muon` for `optax_muon` or `batched_muon`),
compiled first, then timed A B C D E A B C D E ..., `steps_per_call` steps a call, stopped once the loss is on the
host. Prints median ms/step [range] and the ratio to AdamW (the issue's overhead), the same for process CPU time (on
a shared machine the steadier of the two), and each variant over the preset's, paired per repeat.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from optax.contrib import MuonDimensionNumbers, scale_by_muon  # noqa: E402
from optax.contrib._muon import _compute_muon_reshape, scale_by_shape  # noqa: E402  (optax's leaf -> matrices)

from cpu_class import cpu_class  # noqa: E402
from step_cost import build  # noqa: E402

from jaxgpt import optim  # noqa: E402


def newton_schulz(x, coeffs):
    """Newton-Schulz on a batch of (m, n) matrices, m <= n, already Frobenius-normalised: X <- a X + (b A + c A A) X
    with A = X X^T for each (a, b, c) of `coeffs` (optim.newton_schulz's loop, on a batch of its own)."""
    for a, b, c in coeffs:
        A = x @ jnp.swapaxes(x, -1, -2)  # (N, m, m)
        B = b * A + c * A @ A
        x = a * x + B @ x  # (N, m, n)
    return x


def plain_newton_schulz(x, dims, coeffs, dtype="float32"):
    """optim.newton_schulz before its Gram form (2026-12-07): the plain iteration on every matrix, wide ones too
    (float32 products only)."""
    if dtype != "float32":
        raise SystemExit(f"the plain iteration runs float32 products, not muon_ns_dtype {dtype}")
    reshape, inverse = _compute_muon_reshape(x, dims)
    m = reshape(x)  # (N, fan_in, fan_out)
    flip = m.shape[1] > m.shape[2]
    m = jnp.swapaxes(m, 1, 2) if flip else m
    m = newton_schulz(m / (jnp.linalg.norm(m, axis=(1, 2), keepdims=True) + 1e-8), coeffs)
    return inverse(jnp.swapaxes(m, 1, 2) if flip else m)


def normalised_only(x, dims, coeffs, dtype="float32"):
    """No Newton-Schulz: each matrix of the leaf divided by its Frobenius norm, so a run with it times the rest of
    Muon (momentum, scaling, the multi_transform) against AdamW."""
    del coeffs, dtype
    reshape, inverse = _compute_muon_reshape(x, dims)
    m = reshape(x)
    return inverse(m / (jnp.linalg.norm(m, axis=(1, 2), keepdims=True) + 1e-8))


def orthogonalize_by_shape(updates, dims, coeffs):
    """Newton-Schulz (`coeffs`: optim.ns_table) on every matrix of `updates` (leaves split into matrices by `dims`,
    a tree of MuonDimensionNumbers), one batched iteration per (m, n) shape with the short side first."""
    leaves, treedef = jax.tree.flatten(updates)
    dim_list = jax.tree.leaves(dims, is_leaf=lambda d: isinstance(d, MuonDimensionNumbers))
    mats, undo, groups = [], [], {}
    for x, d in zip(leaves, dim_list, strict=True):
        reshape, inverse = _compute_muon_reshape(x, d)
        m = reshape(x)  # (N, fan_in, fan_out)
        flip = m.shape[1] > m.shape[2]
        mats.append(jnp.swapaxes(m, 1, 2) if flip else m)
        undo.append((inverse, flip))
        groups.setdefault(mats[-1].shape[1:], []).append(len(mats) - 1)
    out = [None] * len(mats)
    for idx in groups.values():
        sizes = np.cumsum([mats[i].shape[0] for i in idx])[:-1]
        y = newton_schulz(jnp.concatenate([mats[i] for i in idx]), coeffs)
        for i, part in zip(idx, jnp.split(y, sizes)):
            out[i] = part
    return jax.tree.unflatten(treedef, [inv(jnp.swapaxes(o, 1, 2) if flip else o)
                                        for o, (inv, flip) in zip(out, undo)])


def scale_by_muon_by_shape(momentum: float, ns_steps: int, ns_coeffs: str,
                           dimension_numbers) -> optax.GradientTransformation:
    """optax's scale_by_muon (Nesterov, its state unchanged, so old checkpoints restore) with its Newton-Schulz
    batched by shape: optax runs with ns_steps=0 (momentum and Frobenius normalisation per matrix), then
    `orthogonalize_by_shape` runs optim.ns_table(ns_steps, ns_coeffs)."""
    coeffs = optim.ns_table(ns_steps, ns_coeffs)
    inner = scale_by_muon(beta=momentum, nesterov=True, ns_steps=0, weight_dimension_numbers=dimension_numbers)

    def update(updates, state, params=None):
        normalised, state = inner.update(updates, state, params)
        return orthogonalize_by_shape(normalised, dimension_numbers(normalised), coeffs), state

    return optax.GradientTransformation(inner.init, update)


def _muon_variant(scale_by_muon_fn):
    """optim.muon's signature and chain, with `scale_by_muon_fn(momentum, ns_steps, ns_coeffs, dims)` as its first
    transform."""
    def muon(learning_rate, momentum: float, ns_steps: int = 5, ns_coeffs: str = "quintic", weight_decay: float = 0.0,
             per_head: bool = False, ns_dtype: str = "float32"):
        if weight_decay or per_head or ns_dtype != "float32":
            raise SystemExit(f"the bench's Muon variants run without weight decay or per-head matrices, not "
                             f"muon_weight_decay {weight_decay}, muon_per_head {per_head}, muon_ns_dtype {ns_dtype}")
        dims = optim._masked_dimension_numbers
        return optax.chain(scale_by_muon_fn(momentum, ns_steps, ns_coeffs, dims),
                           scale_by_shape(weight_dimension_numbers=dims), optax.scale_by_learning_rate(learning_rate))
    return muon


# jaxgpt's Muon with its Newton-Schulz batched by shape
batched_muon = _muon_variant(scale_by_muon_by_shape)
# jaxgpt's Muon before 2026-12-07: optax's own Newton-Schulz (a lax.scan over a per-step table such as Polar Express's)
optax_muon = _muon_variant(lambda momentum, ns_steps, ns_coeffs, dims: scale_by_muon(
    beta=momentum, nesterov=True, weight_dimension_numbers=dims, **optim.optax_ns_args(ns_steps, ns_coeffs)))


def fresh_step():
    """A jitted train_steps of its own (its own trace and compile; the state donated as the loop does)."""
    import jax

    from jaxgpt.training import train_steps
    return jax.jit(lambda state, data, mc, tc, n: train_steps(state, data, mc, tc, n), static_argnums=(2, 3, 4),
                   donate_argnums=0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="baby")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--only", nargs="+", default=["float32", "bfloat16", "plain", "optax", "batched"],
                   choices=["float32", "bfloat16", "plain", "optax", "batched", "no_ns"],
                   help="the variants timed beside the preset's Muon and AdamW")
    a = p.parse_args(argv)
    print(cpu_class(), flush=True)
    from jaxgpt import optim

    spec = " ".join([a.preset, *a.set])
    runs = {"muon (the preset's)": build(spec, 65, fresh_step())}
    for dtype in ("float32", "bfloat16"):  # the switch, not a swap: optim's own code with f32 or bf16 products
        if dtype in a.only:
            runs[f"muon, NS products in {dtype}"] = build(f"{spec} muon_ns_dtype={dtype}", 65, fresh_step())
    variants = tuple(v for v in (("muon, plain NS per leaf", "newton_schulz", plain_newton_schulz, "plain"),
                                 ("muon, optax's NS per leaf", "muon", optax_muon, "optax"),
                                 ("muon, NS batched by shape", "muon", batched_muon, "batched"),
                                 ("muon without NS (normalised only)", "newton_schulz", normalised_only, "no_ns"))
                     if v[3] in a.only)
    for name, attr, variant, _ in variants:
        own = getattr(optim, attr)
        setattr(optim, attr, variant)
        try:  # traced and compiled by build's first call, so the swap only lasts that long; f32 products only
            runs[name] = build(f"{spec} muon_ns_dtype=float32", 65, fresh_step())
        finally:
            setattr(optim, attr, own)
    runs["adamw"] = build(spec + " optimizer=adamw", 65, fresh_step())
    times, cpu = {name: [] for name in runs}, {name: [] for name in runs}
    for _ in range(a.repeats):
        for name, run in runs.items():
            k, c0 = run.tc.steps_per_call, time.process_time()
            times[name].append(run.time(k) / k * 1e3)
            cpu[name].append((time.process_time() - c0) / k * 1e3)  # less disturbed by other jobs than wall time
    base = statistics.median(times["adamw"])
    print(f"{spec}, {a.repeats} interleaved repeats, ms/step median [min-max], x AdamW's median:")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:28s} {med:7.2f} [{min(ts):.2f}-{max(ts):.2f}]  x{med / base:.3f}   process CPU "
              f"{statistics.median(cpu[name]):7.2f} x{statistics.median(cpu[name]) / statistics.median(cpu['adamw']):.3f}")
    for name in [n for n in runs if n not in ("adamw", "muon (the preset's)")]:
        paired = [b / p for b, p in zip(times[name], times["muon (the preset's)"])]
        print(f"  {name} / the preset's, paired per repeat: median {statistics.median(paired):.3f} "
              f"[{min(paired):.3f}-{max(paired):.3f}]")


if __name__ == "__main__":
    main()
