"""TPU programs compiled ahead of time, on any machine: the TPU compiler's own view of what `train.py` runs there.

With libtpu installed (`pip install "jax[tpu]"`), `jax.experimental.topologies` describes a TPU slice without a TPU.
Its devices build the mesh through `sharding.make_mesh`, as a run on that slice would, and the programs the loop runs
(the train step `training.train_steps_program` jits, and the jitted bodies of `estimate_loss`, `evaluate_full` and
`generate`) are lowered from shapes alone (`jax.ShapeDtypeStruct`, no arrays, no device) and compiled by the real
TPU compiler. What comes back is the compiler's: bytes per device, FLOPs, the collectives of the partitioned program.
Step times derived from them (`roofline`) are estimates, not measurements. bench/tpu_compile.py writes the tables
of docs/scaling.md; tests/test_tpu_compile.py checks the shardings and collectives.
"""
from __future__ import annotations

import importlib.util
import os
import re
from collections import Counter
from dataclasses import dataclass, replace
from functools import partial

import jax
import numpy as np

from . import flops, sampling, sharding, training
from .config import GPTConfig, TrainConfig
from .data import train_val_split
from .errors import ShardingError

GB, GiB = 1e9, 2 ** 30
TINY_SHAKESPEARE_CHARS = 1_115_394  # the lecture's input.txt; its 65 characters fit a uint8 token array


@dataclass(frozen=True)
class Target:
    """A TPU slice as `jax.experimental.topologies` names it."""
    topology: str                    # topology_name, e.g. "v5e:2x4" (chips along each axis)
    chips_per_host: tuple | None     # chips_per_host_bounds; None = libtpu's default layout of hosts
    doc: str                         # one line: what it is
    megacore: bool = False           # libtpu describes each TensorCore as a device; keep one a chip (core 0), the
                                     # devices JAX sees on the VM and mesh_utils requires (v4: 2 cores a chip)


TARGETS = {
    "v2-8": Target("v2:2x2", None, "Colab's TPU v2-8: 4 chips, 8 TensorCores (8 JAX devices), one host"),
    "v5e-1": Target("v5e:1x1", (1, 1, 1), "Colab's TPU v5e-1: one chip"),
    "v5e-8": Target("v5e:2x4", (2, 4, 1), "v5litepod-8: 8 chips on one host"),
    "v6e-4": Target("v6e:2x2", None, "v6e-4 (Trillium): 4 chips on one host"),
    "v5e-16": Target("v5e:4x4", None, "v5litepod-16: 16 chips on 4 hosts (a jax.distributed run)"),
    "v4-8": Target("v4:2x2x1", None, "v4-8: 4 chips on one host, one JAX device a chip (megacore)", megacore=True),
}
# device_kind -> (HBM bytes, HBM bytes/s) of one JAX device, from Google Cloud's TPU pages: v2 16 GiB and 600 GB/s
# per chip, v3 32 GiB and 900 GB/s, both halved per TensorCore (one JAX device each); v4 32 GiB, 1200 GB/s; v5e
# 16 GB, 819 GB/s; v5p 95 GB, 2765 GB/s; v6e 32 GB, 1640 GB/s. Peak FLOP/s: flops.TPU_PEAKS, the table MFU uses.
HBM = {
    "TPU v2": (8 * GiB, 300 * GB),
    "TPU v3": (16 * GiB, 450 * GB),
    "TPU v4": (32 * GiB, 1200 * GB),
    "TPU v5 lite": (16 * GB, 819 * GB),
    "TPU v5": (95 * GB, 2765 * GB),
    "TPU v6 lite": (32 * GB, 1640 * GB),
}


def unavailable() -> str | None:
    """Why TPU programs cannot be compiled here (libtpu missing), or None when they can."""
    if importlib.util.find_spec("libtpu") is None:
        return f'libtpu is not installed: pip install "jax[tpu]=={jax.__version__}"'
    return None


def devices(target: str) -> list:
    """The TPU devices of a named target (see TARGETS), described by libtpu without a TPU present."""
    if target not in TARGETS:
        raise ShardingError(f"TPU target {target!r} is not one of {', '.join(map(repr, TARGETS))}")
    reason = unavailable()
    if reason:
        raise ShardingError(reason)
    # libtpu takes a lock file that a second process (a parallel test run, this bench beside the tests) would fail
    # on; programs are only compiled here, never run, so several processes may load it
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from jax.experimental import topologies
    t = TARGETS[target]
    bounds = {} if t.chips_per_host is None else {"chips_per_host_bounds": t.chips_per_host}
    found = topologies.get_topology_desc(topology_name=t.topology, platform="tpu", **bounds).devices
    return [d for d in found if not t.megacore or d.core_on_chip == 0]


def mesh_for(target: str, kind: str = "data"):
    """The mesh a run with `--set sharding=KIND` builds on that TPU: `sharding.make_mesh` over its devices."""
    return sharding.make_mesh(kind, devices=devices(target))


def splits_shapes(n_chars: int = TINY_SHAKESPEARE_CHARS, block_size: int = 8) -> dict[str, int]:
    """Token counts of the lecture's 90/10 split of an n_chars text (the split the loop makes)."""
    train, val = train_val_split(np.zeros(n_chars, np.uint8), block_size)
    return {"train": len(train), "val": len(val)}


def _shape(x, mesh, dtype=None):
    """x's shape (and dtype) replicated over the mesh, as the loop places the token arrays and small inputs."""
    return jax.ShapeDtypeStruct(np.shape(x), dtype or x.dtype, sharding=sharding.replicated(mesh))


def abstract_state(mc: GPTConfig, tc: TrainConfig, mesh):
    """The TrainState as shapes, each leaf carrying the sharding `sharding.state_shardings` gives it (make_state's)."""
    shapes = jax.eval_shape(partial(training.create_state, mc, tc))
    return sharding.with_shardings(shapes, sharding.state_shardings(shapes, mesh))


# ---------------------------------------------------------------------------------------------- the programs
def compile_train(mc: GPTConfig, tc: TrainConfig, mesh, n_train: int, n_steps: int | None = None):
    """The training loop's program: `train_steps` jitted by `sharding.jit_step`, tc.steps_per_call steps a call."""
    state = abstract_state(mc, tc, mesh)
    data = jax.ShapeDtypeStruct((n_train,), np.uint8, sharding=sharding.replicated(mesh))
    program = training.train_steps_program(state)
    return program.lower(state, data, mc, tc, n_steps or tc.steps_per_call).compile()


def compile_estimate(mc: GPTConfig, tc: TrainConfig, mesh, n_tokens: int, eval_iters: int | None = None):
    """estimate_loss on one split: eval_iters batches of batch_size, under the mesh as `loop.evaluate` runs it."""
    params = abstract_state(mc, tc, mesh).params
    data = jax.ShapeDtypeStruct((n_tokens,), np.uint8, sharding=sharding.replicated(mesh))
    key = _shape(np.zeros(2), mesh, np.uint32)
    with sharding.mesh_context(mesh):
        micro = tc.batch_size // tc.gradient_accumulation_steps  # estimate_loss's batch
        return training._estimate.lower(params, data, key, mc, micro, eval_iters or tc.eval_iters).compile()


def compile_full(mc: GPTConfig, tc: TrainConfig, mesh, n_tokens: int):
    """evaluate_full over a split of n_tokens: the windows `training.full_pass_windows` cuts, in one program."""
    params = abstract_state(mc, tc, mesh).params
    windows = training.full_pass_windows(np.zeros(n_tokens, np.uint8), mc.block_size)
    with sharding.mesh_context(mesh):
        return training._full_sum.lower(params, *(_shape(a, mesh) for a in windows), mc).compile()


def compile_generate(mc: GPTConfig, tc: TrainConfig, mesh, new_tokens: int | None = None):
    """The end-of-run sample: `generate` of tc.sample_chars tokens after a (1, 1) prompt, in one program."""
    params = abstract_state(mc, tc, mesh).params
    strategy = jax.tree.map(lambda a: _shape(a, mesh), sampling._strategy(mc, 1.0, None, None))
    ctx, key = _shape(np.zeros((1, 1)), mesh, np.int32), _shape(np.zeros(2), mesh, np.uint32)
    n = new_tokens or max(tc.sample_chars, 1)
    return sampling._sample_first.lower(params, ctx, key, strategy, mc, n - 1).compile()


def analysis_configs(mc: GPTConfig, tc: TrainConfig) -> tuple[GPTConfig, TrainConfig]:
    """The same step with nothing scanned: XLA's cost analysis counts a `scan` body once, so FLOPs and bytes of
    one optimizer step come from a program of 1 step, unrolled layers and one micro-batch, no accumulation scan."""
    micro = tc.batch_size // tc.gradient_accumulation_steps
    return replace(mc, scan_layers=False), replace(tc, steps_per_call=1, gradient_accumulation_steps=1,
                                                   batch_size=micro)


def step_cost(mc: GPTConfig, tc: TrainConfig, mesh, n_train: int) -> dict[str, float]:
    """FLOPs and bytes accessed per device of one optimizer step (`cost` of the `analysis_configs` program).

    The TPU compiler's time grows with the unrolled layers (`shakespeare-char` on one v5e: 108 s for the scanned
    step, 629 s unrolled, on a loaded 2-core machine), so a model of L > 2 layers is compiled unrolled with 1 and 2
    layers and extrapolated: every Block is the same computation on the same shapes, so
    cost(L) = cost(1) + (L - 1) * (cost(2) - cost(1)). Exact for the FLOPs; the bytes assume the compiler fuses
    each Block alike (docs/scaling.md compares it with the 6-layer compile). With k > 1 accumulation micro-batches
    (the whole batch at once may not fit a chip) it is compiled with 1 and 2 micro-batches' rows and extrapolated
    alike in k, so the optimizer update is counted once."""
    amc, atc = analysis_configs(mc, tc)
    L, k = amc.n_layer, tc.gradient_accumulation_steps
    ls, ks = (1, 2) if L > 2 else (L,), (1, 2) if k > 1 else (1,)
    c = {(l, j): cost(compile_train(replace(amc, n_layer=l), replace(atc, batch_size=j * atc.batch_size), mesh,
                                    n_train)) for l in ls for j in ks}
    at_l = lambda j, m: c[ls[0], j][m] + (L - ls[0]) * (c[ls[-1], j][m] - c[ls[0], j][m])  # extrapolated to L
    return {m: at_l(ks[0], m) + (k - ks[0]) * (at_l(ks[-1], m) - at_l(ks[0], m)) for m in c[ls[0], ks[0]]}


# ---------------------------------------------------------------------------------------------- what it shows
COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
_OP = re.compile(r"=\s*[^=]*?\b(" + "|".join(COLLECTIVES) + r")(?:-start)?\(")


def collectives(compiled) -> Counter:
    """Collective ops in the compiled (partitioned, optimised) HLO by kind; an async pair counts once."""
    return Counter(m.group(1) for line in compiled.as_text().splitlines() if (m := _OP.search(line)))


def memory(compiled) -> dict[str, int]:
    """Bytes per device the compiler assigns: arguments, outputs, temporaries, and outputs aliased to inputs."""
    m = compiled.memory_analysis()
    return {"arguments": m.argument_size_in_bytes, "outputs": m.output_size_in_bytes,
            "temporaries": m.temp_size_in_bytes, "aliased": m.alias_size_in_bytes,
            "code": m.generated_code_size_in_bytes}


def peak_bytes(mem: dict[str, int]) -> int:
    """Live bytes while the program runs: inputs, new outputs (donated inputs are reused) and temporaries."""
    return mem["arguments"] + mem["outputs"] - mem["aliased"] + mem["temporaries"]


def cost(compiled) -> dict[str, float]:
    """XLA's cost analysis per device: FLOPs and HBM bytes accessed (a scan body counted once)."""
    c = compiled.cost_analysis()
    c = c[0] if isinstance(c, (list, tuple)) else c
    return {"flops": float(c.get("flops", 0.0)), "bytes": float(c.get("bytes accessed", 0.0))}


def state_bytes(compiled, abstract) -> int:
    """Per-device bytes of the state's parameters, Adam moments and moving average (if any) under the compiled
    program's input shardings."""
    shardings = compiled.input_shardings[0][0]
    sizes = jax.tree.map(lambda x, s: int(np.prod(s.shard_shape(x.shape))) * x.dtype.itemsize, abstract, shardings)
    return sum(jax.tree.leaves((sizes.params, sizes.opt_state, sizes.ema)))


def roofline(step_cost: dict[str, float], device_kind: str) -> dict[str, float]:
    """An estimate of one step's time on one device of this kind: the larger of FLOPs / peak and bytes / HBM
    bandwidth (a lower bound on the time: no overlap losses, no collectives, no host)."""
    compute = step_cost["flops"] / flops.TPU_PEAKS[device_kind]
    traffic = step_cost["bytes"] / HBM[device_kind][1]
    return {"compute_s": compute, "memory_s": traffic, "step_s": max(compute, traffic),
            "bound": "compute" if compute >= traffic else "memory"}
