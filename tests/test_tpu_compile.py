"""The TPU programs, compiled by the real TPU compiler (libtpu) without a TPU: shardings, collectives, FLOPs.

Skips when libtpu is not installed (`.ci/run` installs it; elsewhere `pip install "jax[tpu]==<jax version>"`).
Each program is compiled once per module and shared by the tests that read it.
"""
from dataclasses import replace

import jax
import pytest

from conftest import TINY, TINY_TRAIN
from jaxgpt import aot, flops, sharding
from jaxgpt.presets import get_preset

pytestmark = pytest.mark.skipif(aot.unavailable() is not None, reason=str(aot.unavailable()))

N_TOKENS = 4096  # a token array of this length stands in for the text: only its shape is compiled
# FLOPs are compared on a program with nothing scanned (XLA's cost analysis counts a scan body once)
ONE_STEP = replace(TINY_TRAIN, steps_per_call=1, gradient_accumulation_steps=1)
UNROLLED = replace(TINY, scan_layers=False)


@pytest.fixture(scope="module")
def v5e8():
    """The tiny step on 8 v5e chips in data and fsdp mode: (config, abstract state, compiled) per mode."""
    out = {}
    for kind in ("data", "fsdp"):
        tc = replace(ONE_STEP, sharding=kind)
        mesh = aot.mesh_for("v5e-8", kind)
        out[kind] = tc, aot.abstract_state(UNROLLED, tc, mesh), aot.compile_train(UNROLLED, tc, mesh, N_TOKENS)
    return out


def specs(tree):
    """The PartitionSpec of every leaf: of a tree of shardings, or of shapes that carry one."""
    spec = lambda x: str(getattr(x, "sharding", x).spec)
    return jax.tree.leaves(jax.tree.map(spec, tree, is_leaf=lambda x: hasattr(x, "spec") or hasattr(x, "sharding")))


def test_fsdp_shards_the_state_eight_ways_and_its_program_takes_the_sharded_inputs(v5e8):
    data_bytes = aot.state_bytes(v5e8["data"][2], v5e8["data"][1])
    fsdp_bytes = aot.state_bytes(v5e8["fsdp"][2], v5e8["fsdp"][1])
    assert fsdp_bytes == pytest.approx(data_bytes / 8, rel=0.10), (data_bytes, fsdp_bytes)
    for kind in ("data", "fsdp"):
        _, state, compiled = v5e8[kind]
        assert specs(compiled.input_shardings[0][0]) == specs(state)  # state_shardings' specs, as compiled
        assert specs(compiled.output_shardings[0]) == specs(state)  # and the new state comes out split the same
    split = [s for s in specs(v5e8["fsdp"][1].params) if "fsdp" in s]
    assert len(split) >= len(specs(v5e8["fsdp"][1].params)) - 1  # all but lm_head's bias (11 long)


def test_fsdp_gathers_parameters_where_data_mode_all_reduces_gradients(v5e8):
    hlo = {k: v5e8[k][2].as_text() for k in v5e8}
    count = {k: aot.collectives(v5e8[k][2]) for k in v5e8}
    # data: no all-gather at all (each device gathers its own rows from the replicated text), gradients all-reduced
    assert count["data"]["all-gather"] == 0 and count["data"]["all-reduce"] >= 1
    assert "f32[32,128]" in "".join(l for l in hlo["data"].splitlines() if " all-reduce(" in l)
    # fsdp: the full (n_layer, C, 4C) feed-forward kernel is all-gathered (sharding.gather_params) ...
    gathered = [l for l in hlo["fsdp"].splitlines() if " all-gather(" in l]
    assert any("[2,32,128]" in l for l in gathered) and any("[2,128,32]" in l for l in gathered)
    # ... and the whole batch's activations (8, 16, 32) are not
    assert not any("[8,16,32]" in l for l in gathered)
    # its gradient reduced back to the shards (the TPU compiler's reduce-scatter at this size: an all-reduce of the
    # full gradient, then each device keeps its slice; the output shardings are checked in the test above)
    assert count["fsdp"]["all-reduce"] + count["fsdp"]["reduce-scatter"] >= 1
    assert any("f32[32,128]" in l or "f32[2,32,128]" in l for l in hlo["fsdp"].splitlines()
               if " all-reduce(" in l or " reduce-scatter(" in l)


def test_a_scan_of_fsdp_steps_keeps_the_state_split():
    """steps_per_call > 1 scans train_step; the scan's carry keeps the state's fsdp split (sharding.constrain_state),
    so the scanned program has one step's collectives. Without it the TPU compiler re-laid the carry out and
    resharded inside every step: 2 all-to-alls and 35 all-gathers here, 5.4 GB of temporaries a chip for
    shakespeare-char on a v5e-8 (docs/scaling.md)."""
    mesh = aot.mesh_for("v5e-8", "fsdp")
    tc = replace(TINY_TRAIN, sharding="fsdp")
    assert tc.steps_per_call > 1 and TINY.scan_layers
    one, scanned = (aot.collectives(aot.compile_train(TINY, replace(tc, steps_per_call=n), mesh, N_TOKENS))
                    for n in (1, tc.steps_per_call))
    assert scanned["all-to-all"] == 0 and scanned == one, (one, scanned)


def test_xla_flops_of_one_step_match_flops_py():
    tc = replace(ONE_STEP, batch_size=64)  # matmuls dominate: AdamW's and softmax's FLOPs are < 10% here
    mesh = aot.mesh_for("v5e-1")
    compiled = aot.compile_train(UNROLLED, tc, mesh, N_TOKENS)
    params = aot.abstract_state(UNROLLED, tc, mesh).params
    estimate = flops.flops_per_token(UNROLLED, params) * tc.batch_size * UNROLLED.block_size
    assert aot.cost(compiled)["flops"] == pytest.approx(estimate, rel=0.10)


@pytest.mark.parametrize("target", ["v2-8", "v5e-8"])
def test_generate_and_the_full_pass_compile_and_fit(target):
    mesh = aot.mesh_for(target)
    for compiled in (aot.compile_generate(TINY, TINY_TRAIN, mesh), aot.compile_full(TINY, TINY_TRAIN, mesh, 2000)):
        mem = aot.memory(compiled)
        assert 0 < aot.peak_bytes(mem) < aot.HBM[mesh.devices.flat[0].device_kind][0]
    assert mesh.size == 8 and mesh.devices.flat[0].device_kind in flops.TPU_PEAKS


def test_shakespeare_char_generate_compiles_for_colab_v5e_1():
    p = get_preset("shakespeare-char")
    mesh = aot.mesh_for("v5e-1")
    compiled = aot.compile_generate(p.model, p.train, mesh)
    params_bytes = sum(x.size * 4 for x in jax.tree.leaves(aot.abstract_state(p.model, p.train, mesh).params))
    assert aot.memory(compiled)["arguments"] >= params_bytes  # the whole float32 model on its one chip
    assert aot.peak_bytes(aot.memory(compiled)) < aot.HBM["TPU v5 lite"][0]


def test_multi_host_v5e_4x4_compiles_the_train_step_through_the_distributed_sharding_functions():
    devices = aot.devices("v5e-16")
    assert len(devices) == 16 and len({d.process_index for d in devices}) == 4  # 4 hosts, as jax.distributed sees
    tc = replace(ONE_STEP, sharding="fsdp", batch_size=16)
    mesh = sharding.make_mesh("fsdp", devices=devices)  # what make_state builds from jax.devices() on the slice
    assert dict(mesh.shape) == {"data": 1, "fsdp": 16}
    state = aot.abstract_state(TINY, tc, mesh)  # each leaf carries sharding.state_shardings' sharding
    compiled = aot.compile_train(TINY, tc, mesh, N_TOKENS)  # training.train_steps_program: sharding.jit_step
    expected = specs(sharding.state_shardings(state, mesh))
    assert specs(compiled.input_shardings[0][0]) == expected == specs(compiled.output_shardings[0])
    assert any("fsdp" in s for s in expected)  # the state really is split across the 4 hosts' chips
    assert aot.collectives(compiled)["all-gather"] >= 1  # the parameters gathered for the step, as on one host


def test_v4_8_is_one_device_a_chip_as_on_a_v4_vm():
    """libtpu describes a v4 chip's two TensorCores as two devices; the v4-8 target keeps one a chip (megacore)."""
    devices = list(aot.mesh_for("v4-8").devices.flat)
    assert len(devices) == 4 and {d.device_kind for d in devices} == {"TPU v4"}
    assert {d.core_on_chip for d in devices} == {0} and len({tuple(d.coords) for d in devices}) == 4


def test_step_cost_extrapolated_over_micro_batches_matches_the_whole_batch():
    """With accumulation the cost is compiled at 1 and 2 micro-batches' rows and extrapolated (the whole batch at
    once may not fit a chip): its FLOPs are those of the whole batch in one program, the update counted once."""
    mesh = aot.mesh_for("v5e-1")
    tc = replace(ONE_STEP, batch_size=64, gradient_accumulation_steps=4)
    extrapolated = aot.step_cost(UNROLLED, tc, mesh, N_TOKENS)  # compiled with 16 and 32 rows
    whole = aot.cost(aot.compile_train(UNROLLED, replace(tc, gradient_accumulation_steps=1), mesh, N_TOKENS))
    assert extrapolated["flops"] == pytest.approx(whole["flops"], rel=0.01)
