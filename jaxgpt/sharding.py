"""All parallelism policy: the device mesh, the shardings of the state and the batch, `jax.distributed` start-up.

One code path from 1 device to a pod: every run builds a `Mesh` over all devices it sees (a 1-device mesh on a
laptop) and jits the one `train_steps` with explicit in/out shardings (`jit` + `NamedSharding`; `pmap` is the old
API and is not used).

- `data` (default): parameters and optimizer state replicated, the (B, T) batch split by rows over the `data` axis;
  XLA all-reduces the gradients.
- `fsdp`: a (`data`, `fsdp`) mesh, all devices on `fsdp` unless told otherwise; each parameter (and its Adam
  moments) is split along its largest dimension that the `fsdp` size divides, replicated when none does. The batch
  is split over both axes. XLA all-gathers a weight where it is used and reduce-scatters its gradient.

The batch is sampled on the devices from the token array, which is replicated on every device (Tiny Shakespeare is
1 MB as uint8): the B start indices come from one key (B integers, identical everywhere), and the sampled windows
are constrained to the batch sharding, so each device gathers only its own rows (checked in the compiled HLO by
tests/test_sharding.py). No process builds another process's rows, and nothing is fed from the host per step.

`training` asks this module for `constrain_batch` and `jit_step`, the loop and checkpoints for the rest.
"""
from __future__ import annotations

import contextlib
import os
from typing import Callable

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from .config import SHARDINGS as KINDS
from .errors import ShardingError
from .params import is_layer_stacked

DATA, FSDP = KINDS


# ---------------------------------------------------------------------------------------------- multi-process
def _cluster_env() -> str | None:
    """The name of a multi-process launcher whose environment `jax.distributed.initialize()` reads by itself."""
    env = os.environ
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return "JAX_COORDINATOR_ADDRESS"
    if int(env.get("SLURM_NTASKS", env.get("SLURM_STEP_NUM_TASKS", "1")) or 1) > 1 and "SLURM_PROCID" in env:
        return "SLURM"
    if int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
        return "Open MPI"
    if "," in env.get("TPU_WORKER_HOSTNAMES", ""):  # set on every host of a multi-host Cloud TPU slice
        return "Cloud TPU pod"
    return None


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: int = 300) -> bool:
    """Start JAX's distributed runtime when this run is one of several processes; True if it was started.

    Explicit: `coordinator` HOST:PORT (process 0's address), `num_processes`, `process_id` (all three), or
    `coordinator="auto"` to let JAX read a cluster it knows (TPU pod, SLURM, Open MPI, Kubernetes JobSet).
    Implicit: with no arguments, a multi-process environment (`_cluster_env`) starts it too; a lone process
    does nothing. Must run before anything touches a device.
    """
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if coordinator == "auto":
        jax.distributed.initialize(initialization_timeout=timeout_s)
        return True
    if any(given):
        if not all(given):
            raise ShardingError(f"--coordinator {coordinator}, --num-processes {num_processes} and --process-id "
                                f"{process_id}: give all three (or --coordinator auto on a TPU pod / SLURM)")
        if ":" not in coordinator:
            raise ShardingError(f"--coordinator {coordinator!r} is not HOST:PORT")
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ShardingError(f"--process-id {process_id} must be in 0..{num_processes - 1} "
                                f"(--num-processes {num_processes})")
        if num_processes == 1:
            return False
        jax.distributed.initialize(coordinator, num_processes, process_id, initialization_timeout=timeout_s)
        return True
    if _cluster_env():
        jax.distributed.initialize(initialization_timeout=timeout_s)
        return True
    return False


def is_main_process() -> bool:
    """Process 0 prints, logs and writes metrics; every process takes part in the computation and in Orbax saves."""
    return jax.process_index() == 0


# ---------------------------------------------------------------------------------------------- mesh, specs
def make_mesh(kind: str = "data", devices=None, fsdp_size: int | None = None) -> Mesh:
    """A mesh over `devices` (default: all of them, across processes). `fsdp_size` defaults to all devices."""
    if kind not in KINDS:
        raise ShardingError(f"sharding {kind!r} is not one of {', '.join(map(repr, KINDS))}")
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if kind == "data":
        shape, names = (n,), (DATA,)
    else:
        f = n if fsdp_size is None else fsdp_size
        if f < 1 or n % f:
            raise ShardingError(f"fsdp size {f} does not divide the {n} devices")
        shape, names = (n // f, f), (DATA, FSDP)
    # Auto axes: the partitioner propagates shardings (jax.make_mesh would default to Explicit axes)
    return jax.make_mesh(shape, names, axis_types=(AxisType.Auto,) * len(names), devices=devices)


def batch_spec(mesh) -> P:
    """(B, ...) rows split over every mesh axis: in fsdp mode the fsdp devices also take distinct rows."""
    return P(tuple(mesh.axis_names))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, batch_spec(mesh))


def n_batch_shards(mesh: Mesh) -> int:
    return int(np.prod([mesh.shape[a] for a in mesh.axis_names]))


def check_batch(batch_size: int, mesh: Mesh | int, gradient_accumulation_steps: int = 1) -> None:
    """Each micro-batch must split evenly into rows per device; `mesh` may be a mesh or its number of shards."""
    shards = mesh if isinstance(mesh, int) else n_batch_shards(mesh)
    micro = batch_size // gradient_accumulation_steps
    if micro % shards:
        what = (f"batch_size {batch_size}" if gradient_accumulation_steps == 1 else
                f"the micro-batch of {micro} (batch_size {batch_size} / gradient_accumulation_steps "
                f"{gradient_accumulation_steps})")
        raise ShardingError(f"{what} is not divisible by the {shards} data shards (one per device); "
                            f"use a multiple of {shards}")


def param_spec(path, shape: tuple[int, ...], fsdp_size: int) -> P:
    """fsdp: split the largest dimension that fsdp_size divides, replicate if none does. The leading n_layer axis
    of `blocks` leaves is never split: nn.scan slices it one layer at a time."""
    first = 1 if is_layer_stacked(path) and len(shape) > 1 else 0
    dims = sorted(range(first, len(shape)), key=lambda d: (-shape[d], d))
    for d in dims:
        if shape[d] % fsdp_size == 0 and shape[d] >= fsdp_size:
            return P(*[FSDP if i == d else None for i in range(len(shape))])
    return P()


def splits_params(mesh) -> bool:
    """Whether this mesh (concrete or abstract) has an fsdp axis of more than one device: the state is split."""
    return not mesh.empty and FSDP in mesh.axis_names and mesh.shape[FSDP] > 1


def state_shardings(abstract_state, mesh: Mesh):
    """NamedSharding for every leaf of a (shape-only) state: replicated, or fsdp-split for arrays of rank >= 1.

    Adam's moments share their parameter's shape and path suffix, so they get the same split as the parameter.
    """
    if not splits_params(mesh):
        return jax.tree.map(lambda _: replicated(mesh), abstract_state)
    f = mesh.shape[FSDP]
    return jax.tree_util.tree_map_with_path(
        lambda path, x: NamedSharding(mesh, param_spec(path, tuple(x.shape), f) if x.ndim else P()), abstract_state)


def constrain_batch(x: jax.Array) -> jax.Array:
    """Inside a step traced by `jit_step`: rows of x over the batch axes, so each device builds only its rows.
    Elsewhere (no mesh in context) x is returned as is."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    return jax.lax.with_sharding_constraint(x, batch_spec(mesh))


def gather_params(params):
    """Inside a step traced by `jit_step` on an fsdp mesh: the parameters replicated where the step uses them, so
    XLA all-gathers each weight for its matmul and reduce-scatters its gradient (FSDP), and the activations keep
    their rows split. Without it the TPU compiler keeps the weights split and all-gathers the whole batch's
    activations instead (shakespeare-char on a v5e-8: 14 all-gathers of (64, 256, 384), docs/scaling.md).
    Elsewhere (no mesh, or no fsdp axis) `params` is returned as is."""
    mesh = jax.sharding.get_abstract_mesh()
    if not splits_params(mesh):
        return params
    return jax.lax.with_sharding_constraint(params, jax.tree.map(lambda _: P(), params))


def constrain_state(state):
    """At the start of each step `train_steps` scans, on an fsdp mesh: the state pinned to its `state_shardings`
    split, so the scan carries it as the jit's in/out shardings say (pinning the step's output instead does not).
    Without it the TPU compiler picks another layout for the loop's carry and reshards inside every step
    (shakespeare-char on a v5e-8 at 10 steps a call: 2 all-to-alls and 5.4 GB of temporaries a chip against 0.8 GB
    for one step, docs/scaling.md). Elsewhere `state` is returned as is."""
    mesh = jax.sharding.get_abstract_mesh()
    if not splits_params(mesh):
        return state
    return jax.lax.with_sharding_constraint(state, jax.tree.map(lambda s: s.spec, state_shardings(state, mesh)))


# ---------------------------------------------------------------------------------------------- arrays, steps
def init_sharded(init_fn: Callable, mesh: Mesh, *args):
    """(state, shardings): `init_fn(*args)` run under jit with out_shardings, so each device only ever holds its
    shards; the shardings come from `jax.eval_shape`, which allocates nothing."""
    shardings = state_shardings(jax.eval_shape(init_fn, *args), mesh)
    return jax.jit(init_fn, out_shardings=shardings)(*args), shardings


def with_shardings(abstract, shardings=None):
    """A shape-only tree (e.g. a checkpoint's restore target) with a sharding on every leaf: `shardings` if given,
    else the leaf's own, else replicated over all devices. Orbax then reads a checkpoint written on any devices
    (8 TPU cores, 1 CPU) onto these ones."""
    if shardings is None:
        rep = replicated(make_mesh("data"))
        shardings = jax.tree.map(lambda x: getattr(x, "sharding", None) or rep, abstract)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)


def put_replicated(array: np.ndarray, mesh: Mesh) -> jax.Array:
    """A host array (the same on every process) as one global array replicated on every device of the mesh."""
    array = np.asarray(array)
    return jax.make_array_from_callback(array.shape, replicated(mesh), lambda index: array[index])


def process_rows(mesh: Mesh, rows: int) -> tuple[int, int]:
    """[lo, hi): the rows of a (rows, ...) batch split over the mesh's batch axes that this process's devices hold.
    They are contiguous: the devices of a process come together in the mesh."""
    index = batch_sharding(mesh).addressable_devices_indices_map((rows,)).values()
    lo, hi = min(i[0].start or 0 for i in index), max(i[0].stop or rows for i in index)
    return lo, hi


def put_batches(local: np.ndarray, mesh: Mesh, rows: int) -> jax.Array:
    """This process's rows (..., hi - lo, T) of a global (..., rows, T) batch as the global array, rows split over
    the batch axes: each process passes only what it read (`jax.make_array_from_process_local_data`)."""
    spec = P(*([None] * (local.ndim - 2)), tuple(mesh.axis_names), None)
    shape = (*local.shape[:-2], rows, local.shape[-1])
    return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), local, shape)


def fetch(x) -> np.ndarray:
    """A global array as a numpy array on every process (an all-gather when some shards live on other hosts)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def placement(tree) -> tuple[Mesh, object]:
    """(mesh, tree of NamedShardings) where a tree of arrays lives: its own mesh when its leaves carry
    NamedShardings (a state made by the loop or `init_sharded`), else a 1-device mesh on the first leaf's device."""
    leaves = jax.tree.leaves(tree)
    sharding = getattr(leaves[0], "sharding", None) if leaves else None
    if isinstance(sharding, NamedSharding):
        return sharding.mesh, jax.tree.map(lambda x: x.sharding, tree)
    device = next(iter(sharding.device_set)) if sharding is not None else jax.devices()[0]
    mesh = Mesh(np.array([device]), (DATA,), axis_types=(AxisType.Auto,))
    return mesh, jax.tree.map(lambda _: replicated(mesh), tree)


_STEPS: dict = {}


def jit_step(step_fn: Callable, mesh: Mesh, state_sharding, static_argnums=(2,), batches: bool = False):
    """jit `step_fn(state, data, *static) -> (state, metrics)` with explicit shardings: state in and out as
    `state_sharding` (donated), the token array and the metrics replicated (with `batches`: data is the loader's
    (x, y) (n, n_micro, B / n_micro, T), rows split over the batch axes). The mesh is in context while it is
    traced, so `constrain_batch` inside the step splits the sampled batch over the devices. One jitted function
    per (step_fn, mesh, shardings), so a second run in the same process reuses its compiled programs."""
    leaves, treedef = jax.tree.flatten(state_sharding)
    cache_key = (step_fn, mesh, treedef, tuple(leaves), tuple(static_argnums), batches)
    if cache_key not in _STEPS:
        def traced(state, data, *static):
            with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
                return step_fn(state, data, *static)
        rep = replicated(mesh)
        data = (NamedSharding(mesh, P(None, None, tuple(mesh.axis_names), None)),) * 2 if batches else rep
        _STEPS[cache_key] = jax.jit(traced, static_argnums=static_argnums, in_shardings=(state_sharding, data),
                                    out_shardings=(state_sharding, rep), donate_argnums=0)
    return _STEPS[cache_key]


@contextlib.contextmanager
def mesh_context(mesh: Mesh):
    """The mesh in context for code that jits without explicit shardings (evaluation), so `constrain_batch` splits
    its batches too."""
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
        yield


def describe(mesh: Mesh, shardings=None) -> str:
    """One line: processes, devices, mesh shape, and (fsdp) how many state leaves are split."""
    kind = jax.devices()[0].device_kind
    text = (f"{jax.process_count()} process(es), {mesh.size} device(s) ({kind}), mesh "
            + " x ".join(f"{a}={mesh.shape[a]}" for a in mesh.axis_names))
    if shardings is not None:
        leaves = jax.tree.leaves(shardings)
        split = sum(1 for s in leaves if any(a is not None for a in s.spec))
        text += f", {split}/{len(leaves)} state arrays split"
    return text
