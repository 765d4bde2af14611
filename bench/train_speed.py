"""Training throughput: jaxgpt's compiled train step against the PyTorch reference, interleaved in one run.

    python bench/train_speed.py                        # nanoGPT's CPU shape, then the lecture shape
    python bench/train_speed.py --shapes cpu --repeats 9 --steps 100

Each repeat times jaxgpt (this process), PyTorch eager and PyTorch `torch.compile` (one long-lived worker process
each, so compilation happens once) on the same shape, batch and text, float32 on both sides, one after the other
(A B C A B C ...), so a load change on this shared machine hits all three alike. Timers stop only once the result is
on the host (`block_until_ready` / `loss.item()`). The float32 matmul peak (XLA, 2048 x 2048) is measured in the same
repeats and gives jaxgpt's model-FLOPs utilisation (MFU, nanoGPT's estimate: 6N + 12 L T C per token).

The PyTorch side is `../shared/bench/reference_torch.py` (its models and its training step: get_batch, forward,
zero_grad, backward, AdamW step) at PyTorch's default thread count.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]  # this checkout's jaxgpt, not an installed one; cpu_class beside
from cpu_class import cpu_class  # noqa: E402
REFERENCE = REPO.parent / "shared" / "bench" / "reference_torch.py"

# nanoGPT's CPU shape is frozen here (not the `baby` preset, which is tuned for time to quality); lecture = gpt.py
SHAPES = {
    "cpu": dict(style="nanogpt", batch_size=12, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0,
                lr=1e-3, steps=50),
    "lecture": dict(style="lecture", batch_size=64, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2,
                    lr=3e-4, steps=2),
}


def text_path() -> str:
    return str(Path(os.environ.get("JAXGPT_DATA_DIR", REPO.parent / "shared" / "data")) / "tinyshakespeare.txt")


# ----------------------------------------------------------------------------------------------- PyTorch worker
def torch_worker(shape: str, compile_: bool) -> None:
    """Build the reference model once, warm up, then time `n` steps per line read from stdin."""
    import torch

    spec = importlib.util.spec_from_file_location("reference_torch", REFERENCE)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    s = SHAPES[shape]
    torch.manual_seed(1337)
    text = open(text_path(), encoding="utf-8").read()
    stoi = {c: i for i, c in enumerate(sorted(set(text)))}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    train = data[:int(0.9 * len(data))]

    def get_batch():  # reference_torch.get_batch
        ix = torch.randint(len(train) - s["block_size"], (s["batch_size"],))
        return (torch.stack([train[i:i + s["block_size"]] for i in ix]),
                torch.stack([train[i + 1:i + s["block_size"] + 1] for i in ix]))

    model = ref.GPT(len(stoi), s["n_embd"], s["n_head"], s["n_layer"], s["block_size"], s["dropout"], s["style"])
    opt = torch.optim.AdamW(model.parameters(), lr=s["lr"])
    fwd = torch.compile(model) if compile_ else model

    def step():
        xb, yb = get_batch()
        _, loss = fwd(xb, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    t0 = time.perf_counter()
    for _ in range(3):
        step().item()
    print(json.dumps({"ready": round(time.perf_counter() - t0, 2), "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        n = int(line)
        t0 = time.perf_counter()
        for _ in range(n):
            loss = step()
        loss.item()
        print(json.dumps({"s": time.perf_counter() - t0, "loss": loss.item()}), flush=True)


class TorchProc:
    def __init__(self, shape: str, compile_: bool):
        cmd = [sys.executable, __file__, "--torch-worker", shape] + (["--compile"] if compile_ else [])
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def read(self) -> dict:
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"torch worker {self.p.args} exited with {self.p.wait()}")
        return json.loads(line)

    def time(self, n: int) -> float:
        self.p.stdin.write(f"{n}\n")
        self.p.stdin.flush()
        return self.read()["s"]

    def close(self):
        self.p.stdin.close()
        self.p.wait()


# ----------------------------------------------------------------------------------------------- jaxgpt side
def jax_configs(shape: str, steps_per_call: int, overrides=()):
    from jaxgpt.config import GPTConfig, TrainConfig, apply_overrides
    from jaxgpt.presets import PRESETS

    s = SHAPES[shape]
    if shape == "lecture":
        mc, tc = PRESETS["lecture"].model, PRESETS["lecture"].train
    else:  # reference_torch's nanogpt style: biases on Linear and LayerNorm, tied head, GELU
        mc = GPTConfig(block_size=s["block_size"], n_layer=s["n_layer"], n_head=s["n_head"], n_embd=s["n_embd"],
                       dropout=s["dropout"], bias=True, qkv_bias=True, activation="gelu", tie_embeddings=True)
        tc = TrainConfig(batch_size=s["batch_size"])
    # torch.optim.AdamW's defaults: weight decay 0.01 on every tensor, no clipping, constant lr
    tc = dataclasses.replace(tc, learning_rate=s["lr"], weight_decay=0.01, beta2=0.999, grad_clip=0.0,
                             decay_lr=False, warmup_iters=0, steps_per_call=steps_per_call)
    mc, tc = apply_overrides(dataclasses.replace(mc, vocab_size=65), tc, list(overrides))
    return mc, tc


def flops_per_token(mc, n_params: int) -> float:
    """nanoGPT's estimate_mfu (PaLM appendix B): 6N + 12 L T C, N without the position table."""
    n = n_params - (mc.block_size * mc.n_embd if mc.pos_embedding == "learned" else 0)
    return 6 * n + 12 * mc.n_layer * mc.block_size * mc.n_embd


class JaxRunner:
    """jaxgpt's compiled train step for configs (mc, tc) on Tiny Shakespeare, compiled by the first call here.
    `fn` replaces `train_steps_jit` (same signature), e.g. a fresh jit of another variant of the step."""

    def __init__(self, mc, tc, fn=None):
        import jax
        import jax.numpy as jnp

        from jaxgpt.data import CharTokenizer, load_text, train_val_split
        from jaxgpt.params import count_params
        from jaxgpt.training import create_state, train_steps_jit

        self.mc, self.tc = mc, tc
        text = load_text(text_path())
        tok = CharTokenizer.from_text(text)
        self.data = jnp.asarray(train_val_split(tok.encode(text), self.mc.block_size)[0])
        self.state = jax.jit(create_state, static_argnums=(0, 1))(self.mc, self.tc)
        self.flops_per_token = flops_per_token(self.mc, count_params(self.state.params))
        self.fn = fn or train_steps_jit
        t0 = time.perf_counter()
        self.time(self.tc.steps_per_call)
        self.ready = time.perf_counter() - t0

    def time(self, n: int) -> float:
        k = self.tc.steps_per_call
        if n % k:
            raise ValueError(f"steps {n} is not a multiple of steps_per_call {k}")
        t0 = time.perf_counter()
        for _ in range(n // k):
            self.state, metrics = self.fn(self.state, self.data, self.mc, self.tc, k)
        metrics["loss"].block_until_ready()
        return time.perf_counter() - t0


def matmul_peak(n: int = 2048, reps: int = 5) -> float:
    """XLA float32 matmul GFLOP/s: best of `reps` (the peak, not the typical)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def spread(xs) -> str:
    return f"{statistics.median(xs):,.0f} [{min(xs):,.0f}-{max(xs):,.0f}]"


def bench_shape(shape: str, args) -> dict:
    s = SHAPES[shape]
    steps = args.steps or s["steps"]
    k = args.steps_per_call or min(10, steps)
    tokens = steps * s["batch_size"] * s["block_size"]
    runners = {"torch-eager": TorchProc(shape, False)}
    if not args.no_compile:
        runners["torch-compile"] = TorchProc(shape, True)
    ready = {name: r.read() for name, r in runners.items()}  # the workers warm up while jax compiles below
    jaxr = JaxRunner(*jax_configs(shape, k, args.set))
    runners = {"jaxgpt": jaxr, **runners}
    print(f"[{shape}] B={s['batch_size']} T={s['block_size']} L={s['n_layer']} H={s['n_head']} C={s['n_embd']} "
          f"dropout={s['dropout']}; {steps} steps per repeat, jaxgpt steps_per_call={k} {' '.join(args.set)}; "
          f"jaxgpt compile+first call {jaxr.ready:.1f}s; "
          + ", ".join(f"{n} warm-up {r['ready']}s ({r['threads']} threads)" for n, r in ready.items()), flush=True)
    rates = {name: [] for name in runners}
    peaks = []
    for rep in range(args.repeats):
        peaks.append(matmul_peak())
        for name, r in runners.items():
            rates[name].append(tokens / r.time(steps))
        print(f"  repeat {rep + 1}: " + ", ".join(f"{n} {v[-1]:,.0f} tok/s" for n, v in rates.items())
              + f", peak {peaks[-1]:.0f} GFLOP/s", flush=True)
    for name, r in runners.items():
        if name != "jaxgpt":
            r.close()
    med = {name: statistics.median(v) for name, v in rates.items()}
    torch_best = max((n for n in med if n != "jaxgpt"), key=med.get)
    # paired ratios: each repeat's jaxgpt against the faster torch mode of that same repeat
    paired = [rates["jaxgpt"][i] / max(rates[n][i] for n in rates if n != "jaxgpt") for i in range(args.repeats)]
    peak = statistics.median(peaks)
    mfu = [r * jaxr.flops_per_token / (p * 1e9) for r, p in zip(rates["jaxgpt"], peaks)]
    out = {"shape": shape, "tokens_per_s": {n: round(v, 1) for n, v in med.items()},
           "ratio_vs": {n: round(med["jaxgpt"] / med[n], 3) for n in med if n != "jaxgpt"},
           "faster_torch": torch_best, "ratio_vs_faster": round(med["jaxgpt"] / med[torch_best], 3),
           "paired_ratio_median": round(statistics.median(paired), 3),
           "paired_ratio_range": [round(min(paired), 3), round(max(paired), 3)],
           "peak_gflops": round(peak, 1), "mfu": round(statistics.median(mfu), 3),
           "jax_ms_per_step": round(1000 * s["batch_size"] * s["block_size"] / med["jaxgpt"], 2)}
    print(f"[{shape}] tokens/s median [min-max] over {args.repeats} repeats:")
    for name, v in rates.items():
        print(f"  {name:14s} {spread(v)}  ({1000 * s['batch_size'] * s['block_size'] / med[name]:.1f} ms/step)")
    print(f"  jaxgpt / {torch_best} (faster torch): {out['ratio_vs_faster']:.2f}x of medians, paired per repeat "
          f"{out['paired_ratio_median']:.2f}x [{min(paired):.2f}-{max(paired):.2f}]; "
          + ", ".join(f"vs {n} {r:.2f}x" for n, r in out["ratio_vs"].items()))
    print(f"  jaxgpt MFU {out['mfu']:.1%} of the float32 matmul peak {peak:.0f} GFLOP/s "
          f"(range {min(peaks):.0f}-{max(peaks):.0f}), {jaxr.flops_per_token / 1e6:.2f} MFLOP/token")
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="cpu,lecture", help="comma-separated: " + ", ".join(SHAPES))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=0, help="timed steps per repeat (default: per shape)")
    p.add_argument("--steps-per-call", type=int, default=0, help="jaxgpt steps per compiled call (default 10)")
    p.add_argument("--set", action="append", default=["scan_layers=false"], metavar="KEY=VALUE",
                   help="jaxgpt config override (default scan_layers=false: unrolled layers are faster on CPU)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--torch-worker", metavar="SHAPE", help=argparse.SUPPRESS)
    p.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.torch_worker:
        return torch_worker(args.torch_worker, args.compile)
    shapes = args.shapes.split(",")
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        p.error(f"unknown shape(s) {', '.join(unknown)}; valid: {', '.join(SHAPES)}")
    print(cpu_class(), flush=True)
    import jax
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} jax {jax.__version__} on {jax.devices()[0].device_kind}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    results = [bench_shape(s, args) for s in shapes]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
