"""Run by tests/test_sharding.py in a subprocess: JAX must see its simulated devices before it starts.

    python tests/_multidevice_worker.py N_DEVICES OUT_JSON CKPT_IN CKPT_OUT TEXT_FILE

Trains the shared tiny config 5 steps with an N-device `data` mesh and an N-device `fsdp` mesh through the library
API (the caller trains the 1-device reference meanwhile), and writes the losses, the fsdp shardings and the
per-device gather of the batch as JSON.
Checkpoints: restores CKPT_IN (written on 1 device) onto the fsdp shardings and samples from it; saves the fsdp
state to CKPT_OUT and samples from it, so the caller can restore and sample it on 1 device. Last, the CLI's error
for a batch the devices do not divide.
"""
import json
import os
import re
import sys

os.environ["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={int(sys.argv[1])} "
                           "--xla_backend_optimization_level=0")  # LLVM -O0: half the compile time, most of ours
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from conftest import TINY, TINY_TRAIN  # noqa: E402
from jaxgpt import checkpoint as ckpt, sharding, training  # noqa: E402
from jaxgpt.cli import train_main  # noqa: E402
from jaxgpt.data import CharTokenizer  # noqa: E402
from jaxgpt.sampling import generate  # noqa: E402

N_STEPS = 5


def tokens(mc, n=2000):
    return np.random.default_rng(0).integers(0, mc.vocab_size, n).astype(np.uint8)


def run(kind, devices, mc=TINY, tc=TINY_TRAIN):
    mesh = sharding.make_mesh(kind, devices)
    sharding.check_batch(tc.batch_size, mesh)
    state, shardings = sharding.init_sharded(lambda: training.create_state(mc, tc), mesh)
    data = sharding.put_replicated(tokens(mc), mesh)
    step = sharding.jit_step(lambda s, d, n: training.train_steps(s, d, mc, tc, n), mesh, shardings)
    compiled = step.lower(state, data, N_STEPS).compile()  # compiled once: its HLO is the program that runs
    state, metrics = compiled(state, data)
    return state, sharding.fetch(metrics["loss"]).tolist(), compiled.as_text()


def token_gathers(hlo: str) -> list[list[int]]:
    """Shapes of the uint8 gathers in a compiled program: the per-device read of the token array."""
    return [[int(d) for d in m.group(1).split(",")] for m in re.finditer(r"= u8\[([\d,]+)\]\S* gather\(", hlo)]


def greedy_sample(params, mc=TINY, n=12) -> list[int]:
    """Greedy continuation of token 1: the same params give the same tokens on any devices."""
    out = generate(params, mc, np.ones((1, 1), np.int32), n, training.make_keys(0)["sample"], temperature=0.0)
    return sharding.fetch(out)[0].tolist()


def checkpoints(state, mesh, ckpt_in, ckpt_out, mc=TINY, tc=TINY_TRAIN) -> dict:
    target = ckpt.abstract_state(mc, tc)
    target = sharding.with_shardings(target, sharding.state_shardings(target, mesh))
    with ckpt.manager(ckpt_in, read_only=True) as mgr:
        restored, _, _ = ckpt.restore_latest(mgr, target, log=lambda m: None)
    kernel = restored.params["blocks"]["ffwd"]["fc"]["kernel"]
    out = {"in_sample": greedy_sample(restored.params), "in_spec": [str(a) for a in kernel.sharding.spec],
           "in_fingerprint": ckpt.fingerprint(restored.params)}
    meta = ckpt.run_meta(mc, tc, CharTokenizer([chr(97 + i) for i in range(mc.vocab_size)]), preset="", data="")
    with ckpt.manager(ckpt_out) as mgr:
        ckpt.save(mgr, state, meta)
        mgr.wait_until_finished()
    out["out_sample"] = greedy_sample(state.params)
    out["out_fingerprint"] = ckpt.fingerprint(state.params)
    return out


def main():
    out = {"n_devices": jax.device_count()}
    _, out["loss_data"], hlo = run("data", None)
    out["gather_data"] = token_gathers(hlo)
    state, out["loss_fsdp"], hlo = run("fsdp", None)
    out["gather_fsdp"] = token_gathers(hlo)
    kernel = state.params["blocks"]["ffwd"]["fc"]["kernel"]      # (L, C, 4C)
    mu = state.opt_state[0].mu["blocks"]["ffwd"]["fc"]["kernel"]  # its Adam moment
    out["fsdp_kernel"] = {"shape": list(kernel.shape), "spec": [str(a) for a in kernel.sharding.spec],
                          "shard_shapes": sorted({tuple(s.data.shape) for s in kernel.addressable_shards}),
                          "n_shards": len(kernel.addressable_shards),
                          "mu_spec": [str(a) for a in mu.sharding.spec]}
    out["checkpoints"] = checkpoints(state, sharding.make_mesh("fsdp"), sys.argv[3], sys.argv[4])
    out["bad_batch_status"] = train_main(["--preset", "baby", "--data", sys.argv[5], "--out-dir", sys.argv[4] + "-cli",
                                          "--max-iters", "1", "--set", "batch_size=12"])
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
