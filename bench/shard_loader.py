"""The shard path (--data DIR of token files) against the in-memory path, on `baby`'s shape.

    python bench/shard_loader.py speed  [--repeats 30]        # step time, interleaved A B B A ...
    python bench/shard_loader.py memory [--big-gb 2]          # peak RssAnon / VmRSS: 2 GB vs 2 MB train.bin
    python bench/shard_loader.py losses [--steps 300] [--seed 1337]  # Tiny Shakespeare chars: train.bin vs text

Every token folder is written here, as nanoGPT's shakespeare_char/prepare.py writes one (uint16 ids, meta.pkl),
into a temporary folder under /tmp that is deleted at the end. `memory` trains each size in a fresh child process
that samples /proc/self/status every 5 ms (the kernel keeps no peak of RssAnon; VmHWM is VmRSS's peak).
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

SHAKESPEARE = Path(os.environ.get("JAXGPT_DATA_DIR", REPO.parent / "shared" / "data")) / "tinyshakespeare.txt"


def char_folder(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    n = len(text)
    for name, part in (("train", text[:int(n * 0.9)]), ("val", text[int(n * 0.9):])):
        np.array([stoi[c] for c in part], dtype=np.uint16).tofile(folder / f"{name}.bin")
    with open(folder / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}, f)
    return folder


def random_folder(folder: Path, train_bytes: int, vocab: int = 65) -> Path:
    """train.bin of train_bytes random uint16 ids below vocab (written 64 MiB at a time), a 40 KB val.bin."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(folder / "train.bin", "wb") as f:
        left = train_bytes // 2
        while left:
            n = min(left, 1 << 25)
            rng.integers(0, vocab, n, dtype=np.uint16).tofile(f)
            left -= n
    rng.integers(0, vocab, 20_000, dtype=np.uint16).tofile(folder / "val.bin")
    chars = [chr(32 + i) for i in range(vocab)]
    with open(folder / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": vocab, "itos": dict(enumerate(chars)),
                     "stoi": {c: i for i, c in enumerate(chars)}}, f)
    return folder


def speed(args, tmp: Path) -> None:
    import jax
    from jaxgpt import feeds, presets, sharding
    from jaxgpt.rundir import Run, prepare
    from jaxgpt.training import create_state, train_steps_jit
    preset = presets.get_preset("baby")
    mc, tc = preset.model, preset.train
    folder = char_folder(tmp / "chars", SHAKESPEARE.read_text())
    mesh = sharding.make_mesh(tc.sharding)
    paths = {}
    for name, data in (("memory", "tinyshakespeare"), ("shards", str(folder))):
        run, _, train_np, val_np = prepare(Run(model=mc, train=tc, out_dir=tmp / name, data=data))
        feed = feeds.make_feed(run, mesh, train_np, val_np, 0)
        state = sharding.init_sharded(partial(create_state, run.model, tc), mesh)[0]
        paths[name] = [feed, state, 0, [], run.model]
    n, feed_ms = tc.steps_per_call, {}

    def call(name, record):
        feed, state, step, times, model = paths[name]
        t0 = time.perf_counter()  # the shard path's time includes taking the batches and placing them
        data = feed.train(step, n)
        t_feed = time.perf_counter() - t0
        state, metrics = train_steps_jit(state, data, model, tc, n)
        jax.block_until_ready(metrics)
        if record:
            times.append((time.perf_counter() - t0) / n * 1e3)
            feed_ms.setdefault(name, []).append(t_feed / n * 1e3)
        paths[name][1:3] = [state, step + n]

    for name in paths:  # compile, then one warm call each
        call(name, False), call(name, False)
    for r in range(args.repeats):
        for name in (("memory", "shards") if r % 2 == 0 else ("shards", "memory")):
            call(name, True)
    stats = {name: (statistics.median(t), min(t), max(t)) for name, (_, _, _, t, _) in paths.items()}
    print("of which handing the batches over (feed.train, per step): " + ", ".join(
        f"{k} median {statistics.median(v):.3f} ms (max {max(v):.3f})" for k, v in feed_ms.items()))
    ratios = [s / m for s, m in zip(paths["shards"][3], paths["memory"][3])]
    for name, (med, lo, hi) in stats.items():
        print(f"{name:7s} median {med:.2f} ms/step (min {lo:.2f}, max {hi:.2f}) over {args.repeats} calls of {n} steps")
    print(f"shards / memory: ratio of medians {stats['shards'][0] / stats['memory'][0]:.3f}; per-pair ratios median "
          f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")


def _status() -> dict:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "VmRSS", "VmHWM", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024  # MB (kB / 1024)
    return fields


def memory_child(folder: str, steps: int) -> None:
    """Train baby's shape from `folder` for `steps` steps; print the peaks as JSON."""
    from jaxgpt.cli import train_main
    peak, done = {"RssAnon": 0.0, "VmRSS": 0.0, "RssFile": 0.0}, threading.Event()

    def sample():
        while not done.is_set():
            now = _status()
            for k in peak:
                peak[k] = max(peak[k], now[k])
            time.sleep(0.005)
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out = Path(str(folder).rstrip("/") + "-run")
    status = train_main(["--preset", "baby", "--data", folder, "--out-dir", str(out), "--max-iters", str(steps),
                         "--set", f"eval_interval={steps}", f"ckpt_interval={steps}", "eval_iters=5", "sample_chars=0",
                         "full_eval_tokens=4096"])
    done.set()
    thread.join()
    print(json.dumps({"status": status, "peak_RssAnon_MB": round(peak["RssAnon"], 1),
                      "peak_VmRSS_MB": round(peak["VmRSS"], 1), "peak_RssFile_MB": round(peak["RssFile"], 1),
                      "VmHWM_MB": round(_status()["VmHWM"], 1)}))


def memory(args, tmp: Path) -> None:
    results = {}
    for label, size in (("2 MB", 2 * 10**6), (f"{args.big_gb:g} GB", int(args.big_gb * 10**9))):
        folder = random_folder(tmp / label.replace(" ", ""), size)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        p = subprocess.run([sys.executable, __file__, "memory-child", str(folder), "--steps", str(args.steps)],
                           capture_output=True, text=True, env=env)
        line = [x for x in p.stdout.splitlines() if x.startswith("{\"status\"")]
        results[label] = json.loads(line[-1]) if line else {"error": p.stderr[-2000:]}
        print(label, results[label], flush=True)
        shutil.rmtree(folder)
    small, big = results.values()
    print(f"peak RssAnon difference (big - small): {big['peak_RssAnon_MB'] - small['peak_RssAnon_MB']:.1f} MB")


def losses(args, tmp: Path) -> None:
    from jaxgpt.cli import train_main
    folder = char_folder(tmp / "chars", SHAKESPEARE.read_text())
    rows = {}
    for name, data in (("memory", "tinyshakespeare"), ("shards", str(folder))):
        out = tmp / f"run-{name}"
        assert train_main(["--preset", "baby", "--data", data, "--out-dir", str(out), "--max-iters", str(args.steps),
                           "--set",
                           f"eval_interval={args.steps // 3}", f"ckpt_interval={args.steps}", "eval_iters=50",
                           "sample_chars=0", f"lr_decay_iters={args.steps}", "warmup_iters=30",
                           f"seed={args.seed}"]) == 0
        rows[name] = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    print("memory path train/val | shard path train/val")
    for a, b in zip(rows["memory"], rows["shards"]):
        full = (f"   full pass val: {a['val_loss_full']:.4f} / {b['val_loss_full']:.4f}"
                if "val_loss_full" in a else "")
        print(f"step {a['step']}: {a['train_loss']:.4f} / {a['val_loss']:.4f} | {b['train_loss']:.4f} / "
              f"{b['val_loss']:.4f}{full}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("speed", "memory", "losses", "memory-child"))
    p.add_argument("folder", nargs="?")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--big-gb", type=float, default=2.0)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=1337, help="losses: both runs' seed (another shows the seed noise)")
    args = p.parse_args()
    if args.what == "memory-child":
        return memory_child(args.folder, args.steps)
    tmp = Path(tempfile.mkdtemp(prefix="jaxgpt-shard-bench-", dir="/tmp"))
    try:
        {"speed": speed, "memory": memory, "losses": losses}[args.what](args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
