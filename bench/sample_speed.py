"""Sampling speed: jaxgpt's `generate` against the lecture's PyTorch loop, on the same model, in one run.

The `lecture` shape (6 layers, 6 heads, 384 wide, block 256, vocab 65), float32 on both sides, batch 1, from a
one-character context (token 0), as the lecture's `generate(torch.zeros((1, 1)), ...)`. The PyTorch model is
`../shared/bench/reference_torch.py`'s `GPT(..., style="lecture")` with its own random init; its weights are copied
into jaxgpt's layout, and the two models' logits are checked to agree before anything is timed.

Runs alternate jaxgpt, torch, jaxgpt, torch, ...; a jaxgpt timer stops only after `block_until_ready`. The first
jaxgpt call of each length (compile + one run) is timed on its own and reported as the compile time.

    python bench/sample_speed.py                      # 200 and 500 new characters, 5 and 3 repeats
    python bench/sample_speed.py --lengths 200 --repeats 7
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO.parent / "shared" / "bench")]  # this checkout's jaxgpt; the reference
import reference_torch  # noqa: E402  (the shared PyTorch reference, not a package)

from jaxgpt.presets import PRESETS  # noqa: E402
from jaxgpt.model import build_model  # noqa: E402
from jaxgpt.sampling import generate  # noqa: E402
from jaxgpt.training import make_keys  # noqa: E402


def torch_to_jaxgpt(model: torch.nn.Module, n_layer: int, n_head: int) -> dict:
    """The lecture GPT's state_dict in jaxgpt's layout: fused qkv (C, 3, H, hs), proj (H, hs, C), stacked Blocks."""
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}

    def stack(fn):
        return jnp.asarray(np.stack([fn(f"blocks.{i}.") for i in range(n_layer)]))

    def qkv(p):  # each head's nn.Linear weight is (hs, C): x @ W.T
        heads = lambda name: np.stack([sd[f"{p}heads.{h}.{name}.weight"].T for h in range(n_head)], axis=1)
        return np.stack([heads("query"), heads("key"), heads("value")], axis=1)  # (C, 3, H, hs)

    C = sd["tok.weight"].shape[1]
    ln = lambda p, n: {"scale": stack(lambda q: sd[f"{q}{p}.weight"]), "bias": stack(lambda q: sd[f"{q}{p}.bias"])}
    return {
        "token_embedding_table": {"embedding": jnp.asarray(sd["tok.weight"])},
        "position_embedding_table": {"embedding": jnp.asarray(sd["pos.weight"])},
        "blocks": {
            "ln1": ln("ln1", 0), "ln2": ln("ln2", 0),
            "sa": {"qkv": {"kernel": stack(qkv)},
                   "proj": {"kernel": stack(lambda q: sd[f"{q}proj.weight"].T.reshape(n_head, C // n_head, C)),
                            "bias": stack(lambda q: sd[f"{q}proj.bias"])}},
            "ffwd": {"fc": {"kernel": stack(lambda q: sd[f"{q}ffwd.0.weight"].T),
                            "bias": stack(lambda q: sd[f"{q}ffwd.0.bias"])},
                     "proj": {"kernel": stack(lambda q: sd[f"{q}ffwd.2.weight"].T),
                              "bias": stack(lambda q: sd[f"{q}ffwd.2.bias"])}},
        },
        "ln_f": {"scale": jnp.asarray(sd["ln_f.weight"]), "bias": jnp.asarray(sd["ln_f.bias"])},
        "lm_head": {"kernel": jnp.asarray(sd["head.weight"].T), "bias": jnp.asarray(sd["head.bias"])},
    }


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):8.1f}  [{min(xs):.1f} .. {max(xs):.1f}]"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="+", default=[200, 500], help="new characters per sequence")
    p.add_argument("--repeats", type=int, nargs="+", default=[5, 3], help="timed runs per side, per length")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--pause", type=float, default=1.0,
                   help="seconds between a torch run and the next jaxgpt run (0: back to back)")
    a = p.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress shows when redirected to a file
    repeats = a.repeats + [a.repeats[-1]] * (len(a.lengths) - len(a.repeats))

    config = PRESETS["lecture"].model  # 6 x 6 x 384, block 256, vocab 65, float32
    torch.manual_seed(a.seed)
    ref = reference_torch.GPT(config.vocab_size, config.n_embd, config.n_head, config.n_layer, config.block_size,
                              config.dropout, style="lecture").eval()
    params = torch_to_jaxgpt(ref, config.n_layer, config.n_head)

    # the same model on both sides: compare logits on one random window
    idx = np.random.default_rng(a.seed).integers(0, config.vocab_size, (1, config.block_size))
    with torch.no_grad():
        want = ref(torch.from_numpy(idx))[0].numpy()
    got = np.asarray(build_model(config).apply({"params": params}, jnp.asarray(idx, jnp.int32))[0])
    err = float(np.abs(got - want).max())
    assert err < 1e-3, f"jaxgpt and torch logits differ by {err}"

    print(f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); lecture shape, float32, batch 1, one-character context; "
          f"max |logit diff| {err:.1e}")
    key = make_keys(a.seed)["sample"]
    context = jnp.zeros((1, 1), jnp.int32)
    for n, reps in zip(a.lengths, repeats):
        t0 = time.perf_counter()
        generate(params, config, context, n, key).block_until_ready()
        first = time.perf_counter() - t0
        jx, tc = [], []
        for r in range(reps):
            time.sleep(a.pause)  # torch's idle OpenMP workers spin-wait; let them sleep before jaxgpt is timed
            t0 = time.perf_counter()
            out = generate(params, config, context, n, jax.random.fold_in(key, r))
            out.block_until_ready()
            jx.append(n / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            ref.generate(torch.zeros((1, 1), dtype=torch.long), n)
            tc.append(n / (time.perf_counter() - t0))
        assert out.shape == (1, 1 + n)
        compile_s = first - n / statistics.median(jx)
        print(f"\n{n} new characters, {reps} interleaved runs each; chars/s per sequence, median [min .. max]")
        print(f"  jaxgpt generate   {spread(jx)}   (first call {first:.2f} s: compile ~{compile_s:.2f} s)")
        print(f"  torch reference   {spread(tc)}")
        print(f"  ratio (medians)   {statistics.median(jx) / statistics.median(tc):8.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
