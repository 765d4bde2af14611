"""Sharding, multi-process training and MFU: one code path from 1 device to many.

The multi-device checks run in subprocesses (JAX must see its simulated devices before it starts): one with 8
CPU devices (tests/_multidevice_worker.py), and one pair of `train.py` processes joined by jax.distributed.
"""
import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from functools import partial
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from conftest import REPO, TINY, TINY_TRAIN
from jaxgpt import checkpoint as ckpt
from jaxgpt import flops, sharding
from jaxgpt.cli import train_main
from jaxgpt.presets import get_preset
from jaxgpt.data import CharTokenizer
from jaxgpt.training import create_state, train_steps

WORKER = REPO / "tests" / "_multidevice_worker.py"
TIMEOUT = 300  # a missing peer makes jax.distributed abort only after its own, longer timeout


def _env(n_devices: int) -> dict:
    # LLVM -O0 halves XLA's CPU compile time, most of these processes' time
    flags = f"--xla_force_host_platform_device_count={n_devices} --xla_backend_optimization_level=0"
    env = dict(os.environ, XLA_FLAGS=flags,
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("JAX_PLATFORMS", None)
    return env


# ---------------------------------------------------------------------------------------------- in-process

@pytest.mark.parametrize("seed", range(3))
def test_fsdp_spec_splits_the_largest_dimension_the_axis_divides(seed):
    rng = np.random.default_rng(seed)
    blocks = [jax.tree_util.DictKey("blocks"), jax.tree_util.DictKey("kernel")]
    for _ in range(200):
        shape = tuple(int(d) for d in rng.choice([1, 3, 4, 8, 12, 16, 24, 65], size=rng.integers(1, 5)))
        stacked = bool(rng.integers(2))
        spec = sharding.param_spec(blocks if stacked else [], shape, 8)
        allowed = [d for d in range(1 if stacked and len(shape) > 1 else 0, len(shape)) if shape[d] % 8 == 0]
        if not allowed:
            assert spec == sharding.P()
            continue
        (axis,) = [i for i, a in enumerate(spec) if a is not None]
        assert spec[axis] == "fsdp" and shape[axis] % 8 == 0
        assert shape[axis] == max(shape[d] for d in allowed)
        assert not (stacked and len(shape) > 1 and axis == 0)  # the n_layer axis nn.scan slices is never split


def test_one_device_mesh_is_a_data_mesh_with_replicated_state():
    mesh = sharding.make_mesh("fsdp")
    assert dict(mesh.shape) == {"data": 1, "fsdp": 1}
    abstract = jax.eval_shape(lambda: create_state(TINY, TINY_TRAIN))
    assert all(s.spec == sharding.P() for s in jax.tree.leaves(sharding.state_shardings(abstract, mesh)))
    with pytest.raises(sharding.ShardingError, match="'tensor'"):
        sharding.make_mesh("tensor")
    with pytest.raises(sharding.ShardingError, match="fsdp size 3 does not divide the 1 devices"):
        sharding.make_mesh("fsdp", fsdp_size=3)


def test_batch_that_the_shards_do_not_divide_names_both_numbers():
    sharding.check_batch(64, 8)
    with pytest.raises(sharding.ShardingError, match="batch_size 12 is not divisible by the 8 data shards"):
        sharding.check_batch(12, 8)
    with pytest.raises(sharding.ShardingError, match=r"micro-batch of 4 \(batch_size 16 / gradient_accumulation_"):
        sharding.check_batch(16, 8, gradient_accumulation_steps=4)


@pytest.mark.parametrize("argv, message", [
    (["--num-processes", "2"], "give all three"),
    (["--coordinator", "host", "--num-processes", "2", "--process-id", "0"], "is not HOST:PORT"),
    (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"], "--process-id 2 must be in 0..1"),
])
def test_distributed_flags_are_checked_before_anything_starts(argv, message, tmp_path, capsys):
    assert train_main(argv + ["--out-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("train.py: error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_cluster_environments_start_jax_distributed(monkeypatch):
    for var in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID",
                "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES"):
        monkeypatch.delenv(var, raising=False)
    assert sharding._cluster_env() is None
    assert sharding.initialize() is False  # a lone process starts nothing
    assert sharding.initialize("127.0.0.1:1234", 1, 0) is False
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert sharding._cluster_env() is None  # a one-task SLURM job is a lone process
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert sharding._cluster_env() == "SLURM"
    monkeypatch.delenv("SLURM_NTASKS")
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "t1v-0,t1v-1")
    assert sharding._cluster_env() == "Cloud TPU pod"


def test_flops_per_token_matches_nanogpt_and_peaks_are_known_or_none():
    mc = replace(get_preset("shakespeare-char").model, vocab_size=65)
    params = ckpt.abstract_params(mc)
    # nanoGPT prints "number of parameters: 10.65M" for this config (all but the position table)
    assert flops.matmul_params(mc, params) == 10_646_784
    assert flops.flops_per_token(mc, params) == 6 * 10_646_784 + 12 * 6 * 384 * 256
    untied = replace(mc, tie_embeddings=False)
    p2 = ckpt.abstract_params(untied)
    # untied, the token table is a lookup (not counted) and lm_head (C, vocab) a matmul: the same total
    assert flops.matmul_params(untied, p2) == 10_646_784 and "lm_head" in p2
    dev = lambda platform, kind: SimpleNamespace(platform=platform, device_kind=kind)
    assert flops.device_peak_flops(jax.devices("cpu")[0]) is None
    assert flops.device_peak_flops(dev("tpu", "TPU v4")) == 275e12
    assert flops.device_peak_flops(dev("tpu", "TPU v5 lite")) == 197e12
    assert flops.device_peak_flops(dev("gpu", "NVIDIA H100 80GB HBM3")) == 989e12
    assert flops.device_peak_flops(dev("gpu", "NVIDIA H100 PCIe")) == 756e12
    assert flops.device_peak_flops(dev("gpu", "NVIDIA GeForce GTX 1080")) is None
    assert flops.mfu(1000.0, 1e9, 8, None) is None
    assert flops.mfu(275e3, 1e9, 2, 275e12) == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------- 8 devices

def _greedy(params, mc=TINY, n=12):
    from jaxgpt.sampling import generate
    from jaxgpt.training import make_keys
    out = generate(params, mc, np.ones((1, 1), np.int32), n, make_keys(0)["sample"], temperature=0.0)
    return np.asarray(out)[0].tolist()


def test_eight_devices_data_and_fsdp_match_one_device_and_checkpoints_cross(tmp_path, small_text):
    # a checkpoint written here, on 1 device, for the 8-device process to restore
    mesh = sharding.make_mesh("data")
    state, shardings = sharding.init_sharded(partial(create_state, TINY, TINY_TRAIN), mesh)
    meta = ckpt.run_meta(TINY, TINY_TRAIN, CharTokenizer([chr(97 + i) for i in range(TINY.vocab_size)]),
                         preset="", data="")
    with ckpt.manager(tmp_path / "one") as mgr:
        ckpt.save(mgr, state, meta)
        mgr.wait_until_finished()

    out_json = tmp_path / "out.json"
    worker = subprocess.Popen([sys.executable, str(WORKER), "8", str(out_json), str(tmp_path / "one"),
                               str(tmp_path / "eight"), str(small_text)],
                              env=_env(8), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:  # meanwhile, the 1-device reference through the same library path
        fingerprint, sample = ckpt.fingerprint(state.params), _greedy(state.params)
        data = sharding.put_replicated(np.random.default_rng(0).integers(0, TINY.vocab_size, 2000).astype(np.uint8),
                                       mesh)  # the worker's tokens
        step = sharding.jit_step(train_steps, mesh, shardings, static_argnums=(2, 3, 4))
        ref = np.asarray(step(state, data, TINY, TINY_TRAIN, 5)[1]["loss"])
        _, stderr = worker.communicate(timeout=TIMEOUT)
    finally:
        worker.kill()
    assert worker.returncode == 0, stderr[-3000:]
    out = json.loads(out_json.read_text())
    assert out["n_devices"] == 8

    assert len(ref) == 5 and np.isfinite(ref).all()
    np.testing.assert_allclose(out["loss_data"], ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["loss_fsdp"], ref, atol=1e-5, rtol=0)

    k = out["fsdp_kernel"]  # (n_layer, C, 4C) = (2, 32, 128): split 8 ways along 4C, as is its Adam moment
    assert k["spec"] == ["None", "None", "fsdp"] and k["mu_spec"] == k["spec"]
    assert k["n_shards"] == 8 and k["shard_shapes"] == [[2, 32, 16]]
    # each device gathers only its own batch rows from the replicated tokens: B / 8 windows of T + 1
    rows = [[TINY_TRAIN.batch_size // 8, TINY.block_size + 1]]
    assert [sorted(g) for g in out["gather_data"]] == [sorted(r) for r in rows]
    assert [sorted(g) for g in out["gather_fsdp"]] == [sorted(r) for r in rows]

    c = out["checkpoints"]
    # 1 device -> 8: restored split over fsdp, bit-identical, and it samples what it samples here
    assert c["in_spec"] == ["None", "None", "fsdp"]
    assert c["in_fingerprint"] == fingerprint
    assert c["in_sample"] == sample
    # 8 devices -> 1
    mc, params, _ = ckpt.load_checkpoint(tmp_path / "eight")
    assert mc == TINY and ckpt.fingerprint(params) == c["out_fingerprint"]
    assert _greedy(params) == c["out_sample"]

    assert out["bad_batch_status"] == 2
    assert "batch_size 12 is not divisible by the 8 data shards" in stderr
    assert not (tmp_path / "eight-cli").exists()


# ---------------------------------------------------------------------------------------------- 2 processes

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_processes(command, meanwhile=lambda: None) -> list[tuple[str, str]]:
    """Start `command(i)` as processes 0 and 1 of one jax.distributed run on a free local port, call `meanwhile()`
    here while they run, and return their (stdout, stderr) once both exited 0 (killed after TIMEOUT)."""
    port = _free_port()
    procs = [subprocess.Popen([*command(i), "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                               "--process-id", str(i)], env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    try:
        meanwhile()
        outs = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return outs


def test_two_processes_train_like_one(tmp_path, small_text, capsys):
    args = ["--preset", "baby", "--data", str(small_text), "--max-iters", "5", "--seed", "3",
            "--set", "n_layer=1", "--set", "n_head=2", "--set", "n_embd=32", "--set", "block_size=16",
            "--set", "batch_size=8", "--set", "eval_interval=5", "--set", "eval_iters=2", "--set", "steps_per_call=5",
            "--set", "sample_chars=24", "--set", "sharding=fsdp",
            "--set", "muon_ns_dtype=float32"]  # bf16 products would round the runs' last-bit differences apart
    one = {}

    def meanwhile():  # the same run in this process on 1 device
        assert train_main(args + ["--out-dir", str(tmp_path / "one")]) == 0
        one["stdout"] = capsys.readouterr().out

    outs = two_processes(lambda i: [sys.executable, str(REPO / "train.py"), *args, "--out-dir", str(tmp_path / "two")],
                         meanwhile)
    one_stdout = one["stdout"]

    (out0, _), (out1, _) = outs
    assert "2 process(es), 4 device(s) (cpu), mesh data=1 x fsdp=4" in out0
    assert "step 5" not in out1 and "----" not in out1  # only process 0 prints
    two = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    one = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in two] == [r["step"] for r in one] == [0, 5]  # written once, by process 0
    for a, b in zip(one, two):
        for key in ("train_loss", "val_loss", "val_loss_full"):
            if key in a:  # records keep 5 decimals: equal to that precision
                assert abs(a[key] - b[key]) <= 1.01e-5, (key, a, b)
        assert b["mfu"] is None  # CPU: peak unknown, never guessed
    sample = lambda text: text.split("-" * 40)[1]
    assert sample(out0) == sample(one_stdout)  # process 0 samples from the sharded params what 1 device samples
    assert ckpt.has_checkpoints(tmp_path / "two") == [0, 5]
