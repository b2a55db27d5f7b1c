"""triton_grouped: parity (both paths), routing alignment, configs, the custom op, determinism.

Runs on the CPU under the Triton interpreter (conftest sets TRITON_INTERPRET=1 without a GPU);
shapes are tiny. GPU-only checks (CUDA graph capture) are marked `gpu`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os

import pytest
import torch

from moebench import registry
from moebench.errors import MoEInputError
from moebench.kernels.triton_grouped import fit, space
from moebench.parity import Case, compare, edge_cases, make_case_inputs, random_cases, run_case
from moebench.presets import REAL_PRESETS, get_preset
from moebench.reference import reference_moe
from moebench.spec import MoESpec
from moebench.tuning import tunable
from moebench.weights import MoEWeights, empty_weights, random_inputs, random_weights

pytest.importorskip("triton")

from moebench.compile_check import record_launches  # noqa: E402
from moebench.impls.common import align as align_mod  # noqa: E402
from moebench.impls.common.align import align_pairs, max_blocks_for  # noqa: E402
from moebench.impls.common.layer_ops import layer_op_args  # noqa: E402
from moebench.impls.triton_grouped.config import check_tile_config, resolve_launch_configs  # noqa: E402
from moebench.kernels.common.interpreter import (  # noqa: E402
    bf16_cast_truncates,
    bf16_dot_broken,
    dot_flags,
    kernel_device,
    store_flags,
)

IMPL = "triton_grouped"
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
GROUPED = {"path": {"path": "grouped"}}
DECODE = {"path": {"path": "decode"}}


@pytest.fixture(scope="module")
def info():
    impl = registry.get(IMPL)
    ok, reason = impl.available(kernel_device())
    if not ok:
        pytest.skip(reason)
    return impl


def with_config(impl, config):
    """The registered implementation with `config` always passed (forces a path / tiles)."""
    return dataclasses.replace(impl, fn=functools.partial(impl.fn, config=config))


def assert_cases_pass(impl, spec, cases, device, seed=0):
    for i, case in enumerate(cases):
        outcome = run_case(impl, spec, case, device, seed=seed + i)
        detail = outcome.error or (outcome.result.message if outcome.result else "")
        assert outcome.ok, f"{spec.describe()} {case.name}: {detail}"


# -- registration ----------------------------------------------------------------------------------
def test_registered_with_capabilities(info):
    assert info.kind == "grouped-gemm"
    assert info.requires == ("triton",)
    assert set(info.dtypes) == set(DTYPES)
    assert info.devices == ("cpu", "cuda")
    assert info.graph_safe and not info.backward and not info.exportable


def test_tunables_registered_and_spaces_valid():
    for spec in (get_preset("tiny", "bf16"), get_preset("qwen3-30b-a3b", "bf16"), get_preset("tiny-relu", "fp32")):
        for tokens in (1, 16, 4096):
            for kernel in ("gate_up", "down", "decode_gate_up", "decode_down"):
                kern = tunable(IMPL, kernel)
                configs = kern.space(spec, tokens) + [kern.default(spec, tokens)]
                keys = {"gate_up": space.GATE_UP_KEYS, "down": space.DOWN_KEYS}.get(kernel, space.DECODE_KEYS)
                for cfg in configs:
                    check_tile_config(kernel, dict(cfg), keys)
            assert tunable(IMPL, "path").default(spec, tokens)["path"] in space.PATHS


@pytest.mark.parametrize("preset", REAL_PRESETS)
def test_defaults_fit_hopper_for_real_presets(preset):
    """Default tiles stay within Hopper's shared memory per block and the register budget."""
    for dtype in ("bf16", "fp32"):
        spec = get_preset(preset, dtype)
        gates, elem = (2 if spec.gated else 1), spec.dtype.itemsize
        for tokens in (1, 4, 16, 128, 1024, 16384):
            gate_up = space.gate_up_default(spec, tokens)
            assert fit.fits(gate_up["BLOCK_M"], gate_up, gates, elem), (preset, tokens, gate_up)
            assert fit.fits(gate_up["BLOCK_M"], space.down_default(spec, tokens), 1, elem)
            for cfg, g in (
                (space.decode_gate_up_default(spec, tokens), gates),
                (space.decode_down_default(spec, tokens), 1),
            ):
                assert fit.fits(cfg["BLOCK_P"], cfg, g, elem), (preset, tokens, cfg)


def test_decode_space_drops_the_tiles_ptxas_spilled():
    """compile_check --space (sm_90) saw these decode tiles spill 52-476 bytes (BLOCK_P = 64, wgmma
    path); the space must not offer them, and must keep the neighbours that compiled cleanly."""
    spilled = [  # (gated, BLOCK_N, BLOCK_K)
        (True, 128, 64),
        (True, 128, 128),
        (True, 64, 256),
        (False, 128, 256),
    ]
    clean = [(True, 64, 128), (True, 64, 64), (False, 128, 128), (False, 64, 256)]
    for gated, bn, bk in spilled + clean:
        cfg = {"BLOCK_P": 64, "BLOCK_N": bn, "BLOCK_K": bk, "num_warps": 4, "num_stages": 2}
        fits = fit.decode_wgmma_regs_fit(64, cfg, 2 if gated else 1, 2)
        assert fits == ((gated, bn, bk) in clean), cfg
    spec = get_preset("gpt-oss-20b", "bf16")  # T=16: 64 pairs, BLOCK_P = 64
    offered = {(c["BLOCK_N"], c["BLOCK_K"], c["num_warps"]) for c in space.decode_gate_up_space(spec, 16)}
    assert (128, 64, 4) not in offered and (64, 128, 4) in offered


def test_path_rule_picks_both_paths():
    spec = get_preset("tiny", "bf16")  # k = 2
    assert space.path_default(spec, 1) == {"path": "decode"}
    assert space.path_default(spec, space.DECODE_MAX_PAIRS // 2) == {"path": "decode"}
    assert space.path_default(spec, space.DECODE_MAX_PAIRS // 2 + 1) == {"path": "grouped"}
    assert resolve_launch_configs(spec, 37, torch.device("cpu")).path == "grouped"
    assert resolve_launch_configs(spec, 37, torch.device("cpu"), DECODE).path == "decode"


# -- interpreter workarounds ------------------------------------------------------------------------
@pytest.mark.interpreter
def test_bf16_workarounds_active_under_interpreter():
    assert bf16_dot_broken(), "the interpreter's bf16 tl.dot is right now: the UPCAST_BF16 workaround can go"
    assert dot_flags(torch.bfloat16)["UPCAST_BF16"] is True
    assert dot_flags(torch.float16)["UPCAST_BF16"] is False
    assert bf16_cast_truncates(), "the interpreter rounds fp32->bf16 right now: the ROUND_BF16 workaround can go"
    assert store_flags(torch.bfloat16)["ROUND_BF16"] is True
    # every launched kernel that multiplies tiles gets the flags (both paths)
    spec = get_preset("tiny", "bf16")
    w = random_weights(spec)
    for config, tokens in ((GROUPED, 5), (DECODE, 5)):
        launches = record_launches(spec, tokens, config, device="cpu", weights=w)
        with_mma = [launch for launch in launches if "UPCAST_BF16" in launch.kwargs]
        assert len(with_mma) == 2
        assert all(launch.kwargs["UPCAST_BF16"] and launch.kwargs["ROUND_BF16"] for launch in with_mma)


# -- routing alignment ---------------------------------------------------------------------------
def _expected_alignment(ids: torch.Tensor, num_experts: int, block_m: int):
    flat = ids.reshape(-1)
    counts = torch.bincount(flat, minlength=num_experts)
    blocks = (counts + block_m - 1) // block_m
    order = torch.argsort(flat, stable=True)
    return counts, blocks, order


@pytest.mark.parametrize(
    "num_tokens, top_k, num_experts, block_m, max_chunks",
    [
        (1, 1, 1, 16, 128),  # one pair, one expert
        (37, 2, 4, 16, 128),  # odd count, several chunks
        (50, 3, 5, 32, 128),
        (40, 4, 16, 16, 128),
        (125, 4, 6, 64, 4),  # few chunks of several one-hot tiles each
        (9, 2, 40, 16, 128),  # more experts than pairs: most experts empty
    ],
)
def test_alignment_matches_torch(num_tokens, top_k, num_experts, block_m, max_chunks, monkeypatch, triton_device):
    monkeypatch.setattr(align_mod, "MAX_CHUNKS", max_chunks)
    gen = torch.Generator().manual_seed(num_tokens * 7 + num_experts)
    ids = torch.stack([torch.randperm(num_experts, generator=gen)[:top_k] for _ in range(num_tokens)])
    if num_experts > 4:  # leave some experts empty and crowd one
        ids = torch.where(ids % 3 == 1, torch.zeros_like(ids), ids)
        ids = torch.stack([row if len(set(row.tolist())) == top_k else torch.arange(top_k) for row in ids])
    real_empty = torch.empty  # the workspace starts as valid pair ids (0), not as whatever memory held
    monkeypatch.setattr(align_mod.torch, "empty", lambda *args, **kwargs: real_empty(*args, **kwargs).zero_())
    aligned = align_pairs(ids.to(triton_device), num_experts, block_m)
    monkeypatch.undo()
    counts, blocks, order = _expected_alignment(ids, num_experts, block_m)
    num_pairs = ids.numel()
    num_blocks = int(aligned.num_blocks.item())
    assert num_blocks == int(blocks.sum())
    assert aligned.max_blocks == max_blocks_for(num_pairs, num_experts, block_m) >= num_blocks
    expected_expert = torch.repeat_interleave(torch.arange(num_experts), blocks)
    assert torch.equal(aligned.block_expert[:num_blocks].long().cpu(), expected_expert)
    assert bool((aligned.block_expert[num_blocks:] == -1).all())
    assert bool((aligned.sorted_pairs[num_blocks * block_m :] == num_pairs).all()), "rows past the valid blocks"
    rows = aligned.sorted_pairs[: num_blocks * block_m].long().cpu()
    start = 0
    for expert in range(num_experts):
        count, padded = int(counts[expert]), int(blocks[expert]) * block_m
        mine = order[int(counts[:expert].sum()) : int(counts[: expert + 1].sum())]
        assert torch.equal(rows[start : start + count], mine), f"expert {expert}: pairs or their order"
        assert bool((rows[start + count : start + padded] == num_pairs).all()), f"expert {expert}: padding"
        start += padded
    real = rows[rows < num_pairs]
    assert torch.equal(torch.sort(real).values, torch.arange(num_pairs)), "every pair exactly once"


def test_max_blocks_bound_is_tight_enough():
    assert max_blocks_for(0, 8, 16) == 0
    assert max_blocks_for(1, 8, 16) == 1
    assert max_blocks_for(128, 256, 16) == 128  # at most one block per pair
    assert max_blocks_for(16384 * 8, 128, 128) == 1024 + 128


# -- parity -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("path", ["grouped", "decode"])
def test_parity_edge_cases_tiny(info, triton_device, dtype, path):
    """T=0, T=1, T=37, empty experts, all tokens on one expert, plus a random case."""
    spec = get_preset("tiny", dtype)
    cases = edge_cases(spec) + random_cases(1, max_tokens=40)
    assert_cases_pass(with_config(info, {"path": {"path": path}}), spec, cases, triton_device)


@pytest.mark.parametrize(
    "preset, dtype, path",
    [
        ("tiny-odd", torch.bfloat16, "grouped"),
        ("tiny-odd", torch.float32, "decode"),
        ("tiny-k-eq-e", torch.bfloat16, "grouped"),
        ("tiny-k-eq-e", torch.float16, "decode"),
        ("tiny-gelu", torch.float16, "grouped"),  # k = 1: the down kernel writes out directly
        ("tiny-gelu", torch.bfloat16, "decode"),
        ("tiny-relu", torch.bfloat16, "grouped"),
        ("tiny-relu", torch.float32, "decode"),
        ("tiny-many", torch.bfloat16, "decode"),  # sigmoid router, E=16: pair-led and expert-led decode
    ],
)
def test_parity_presets(info, triton_device, preset, dtype, path):
    spec = get_preset(preset, dtype)
    cases = [Case("T=1", 1), Case("all on expert 0", 19, always=(0,))]
    if spec.num_experts > spec.top_k:
        cases.append(Case("empty experts", 21, never=(spec.num_experts - 1,)))
    assert_cases_pass(with_config(info, {"path": {"path": path}}), spec, cases, triton_device)


def test_parity_default_rule_and_split_down_block(info, triton_device):
    spec = get_preset("tiny", torch.bfloat16)
    assert_cases_pass(info, spec, [Case("T=3", 3), Case("T=30", 30)], triton_device)  # decode, then grouped
    split = {**GROUPED, "gate_up": {"BLOCK_M": 32}, "down": {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}}
    assert_cases_pass(with_config(info, split), spec, [Case("T=29", 29)], triton_device)


def test_decode_leader_check_over_several_pair_blocks(info, triton_device):
    """More experts than pairs with pairs > BLOCK_P: the leader scan runs over several blocks."""
    spec = MoESpec(40, 2, 32, 24, dtype=torch.float32)
    config = {**DECODE, "decode_gate_up": {"BLOCK_P": 16}, "decode_down": {"BLOCK_P": 16}}
    cases = [Case("T=15, expert 3 crowded", 15, always=(3,))]
    assert_cases_pass(with_config(info, config), spec, cases, triton_device)


@pytest.mark.parametrize("path", ["grouped", "decode"])
def test_non_contiguous_x_is_read_through_strides(info, triton_device, path):
    spec = get_preset("tiny-odd", torch.float32)
    weights = random_weights(spec, device=triton_device, seed=3)
    wide = random_inputs(spec.replace(hidden=2 * spec.hidden), 9, device=triton_device, seed=4)
    x = wide[:, ::2]
    assert not x.is_contiguous()
    out = info(x, weights, config={"path": {"path": path}})
    result = compare(out, reference_moe(x, weights), spec.dtype)
    assert result.ok, result.message


def test_t0_launches_nothing_and_returns_empty(info, triton_device):
    spec = get_preset("tiny", torch.bfloat16)
    weights = random_weights(spec, device=triton_device)
    assert record_launches(spec, 0, None, device=triton_device, weights=weights) == []
    out = info(random_inputs(spec, 0, device=triton_device), weights)
    assert out.shape == (0, spec.hidden) and out.dtype == spec.dtype


@pytest.mark.parametrize("path", ["grouped", "decode"])
def test_deterministic(info, triton_device, path):
    spec = get_preset("tiny-many", torch.bfloat16)
    weights, x = make_case_inputs(spec, Case("T=30", 30), triton_device, seed=11)
    first = info(x, weights, config={"path": {"path": path}})
    second = info(x, weights, config={"path": {"path": path}})
    assert torch.equal(first, second)


# -- configs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "config, message",
    [
        ({"gate_up": {"BLOCK_M": 24}}, "config['gate_up']['BLOCK_M']: expected a power of two"),
        ({"gate_up": {"BLOCK_M": 8}}, "config['gate_up']['BLOCK_M']: expected a power of two in [16, 256]"),
        ({"gate_up": {"BLOCK_MM": 32}}, "config['gate_up']: unknown key(s) ['BLOCK_MM']"),
        ({"down": {"num_warps": 3}}, "config['down']['num_warps']: expected one of"),
        ({"down": {"num_stages": "4"}}, "config['down']['num_stages']: expected an int"),
        ({"gate_up": {"BLOCK_M": 16}, "down": {"BLOCK_M": 32}}, "config['down']['BLOCK_M']: must divide"),
        ({"path": {"path": "fast"}}, "config['path']: expected"),
        ({"gemm": {"BLOCK_M": 16}}, "config: unknown kernel(s) ['gemm']"),
        ({"decode_down": {"BLOCK_P": 48}}, "config['decode_down']['BLOCK_P']: expected a power of two"),
        ({"decode_gate_up": [16, 32]}, "config['decode_gate_up']: expected a dict"),
        ([("gate_up", {})], "config: expected a dict"),
    ],
)
def test_bad_config_raises_clear_error(info, triton_device, config, message):
    spec = get_preset("tiny", torch.float32)
    weights = random_weights(spec, device=triton_device)
    x = random_inputs(spec, 40, device=triton_device)  # grouped by default; decode configs are checked too
    with pytest.raises(MoEInputError) as err:
        info(x, weights, config=config)
    assert message in str(err.value)


def test_partial_config_overrides_only_its_keys():
    spec = get_preset("tiny", torch.float16)
    configs = resolve_launch_configs(spec, 40, torch.device("cpu"), {**GROUPED, "gate_up": {"BLOCK_N": 16}})
    default = space.gate_up_default(spec, 40)
    assert configs.first == {**default, "BLOCK_N": 16}
    assert configs.second["BLOCK_M"] == default["BLOCK_M"]  # down inherits the align block


# -- the custom op -----------------------------------------------------------------------------------
def test_fake_impl_shape_and_dtype():
    from torch._subclasses.fake_tensor import FakeTensorMode

    import moebench.impls.triton_grouped.op  # noqa: F401  (defines the ops)

    spec = get_preset("tiny", torch.bfloat16)
    with FakeTensorMode():
        x = torch.empty(7, spec.hidden, dtype=spec.dtype)
        out = torch.ops.moebench.triton_grouped_moe(*layer_op_args(x, empty_weights(spec)))
        assert out.shape == (7, spec.hidden) and out.dtype == spec.dtype
        assert out.is_contiguous()


def test_opcheck(triton_device):
    from moebench.impls.triton_grouped.op import encode_config

    spec = get_preset("tiny", torch.float32)
    weights = random_weights(spec, device=triton_device)
    x = random_inputs(spec, 5, device=triton_device)
    args = layer_op_args(x, weights, encode_config(DECODE))
    torch.library.opcheck(torch.ops.moebench.triton_grouped_moe.default, args)
    out = torch.full_like(x, math.nan)
    out_args = layer_op_args(x, weights, encode_config(DECODE), out=out)
    torch.library.opcheck(torch.ops.moebench.triton_grouped_moe_out.default, out_args)
    torch.ops.moebench.triton_grouped_moe_out(*out_args)  # opcheck works on copies
    assert compare(out, reference_moe(x, weights), spec.dtype).ok


def test_torch_export_sees_one_op(triton_device):
    spec = get_preset("tiny", torch.float32)
    weights = random_weights(spec, device=triton_device)

    class Layer(torch.nn.Module):
        def forward(self, x, router, w1, w2):
            return torch.ops.moebench.triton_grouped_moe(*layer_op_args(x, MoEWeights(spec, router, w1, w2)))

    program = torch.export.export(Layer(), (random_inputs(spec, 5, device=triton_device), *weights.parameters()))
    calls = [node.target for node in program.graph.nodes if node.op == "call_function"]
    assert calls == [torch.ops.moebench.triton_grouped_moe.default]


def test_registry_fn_calls_the_op(info, triton_device, monkeypatch):
    calls = []
    real = torch.ops.moebench.triton_grouped_moe_out

    def spy(*args):
        calls.append(args[-1])
        return real(*args)

    monkeypatch.setattr(torch.ops.moebench, "triton_grouped_moe_out", spy, raising=False)
    spec = get_preset("tiny", torch.float32)
    weights = random_weights(spec, device=triton_device)
    x = random_inputs(spec, 2, device=triton_device)
    out = torch.full_like(x, math.nan)
    assert info(x, weights, out=out, config=DECODE) is out
    assert calls and '"decode"' in calls[0]


# -- GPU only ------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("tokens", [1, 16, 300])
def test_cuda_graph_capture_matches_eager(info, tokens):
    spec = get_preset("small-32x4", torch.bfloat16)
    weights = random_weights(spec, device="cuda")
    x = random_inputs(spec, tokens, device="cuda")
    eager = info(x, weights)
    out = torch.empty_like(x)
    info(x, weights, out=out)  # warm up (compiles) outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        info(x, weights, out=out, check=False)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, eager)


# -- compiled code (no GPU needed) ----------------------------------------------------------------------
@pytest.mark.slow
def test_every_kernel_compiles_for_sm90_without_spills():
    """The interpreter is lenient; the compiler is not. Compile every launch of both paths for
    the H100 (sm_90) in a subprocess without the interpreter, and check ptxas reports no spills."""
    import subprocess
    import sys

    libtriton = pytest.importorskip("triton._C.libtriton")
    if not hasattr(libtriton, "native_specialize_impl"):
        pytest.skip("this triton has no native_specialize_impl (compile_check needs it)")
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_DEFAULT_FP_FUSION": "1"}
    cmd = [sys.executable, "-m", "moebench.compile_check", "--preset", "tiny", "--tokens", "1,40"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("T=")]
    kernels = {line.split()[1].rstrip(":") for line in lines}
    assert {"grouped_gate_up_kernel", "grouped_down_kernel", "decode_gate_up_kernel", "decode_down_kernel"} <= kernels
    assert {"count_experts_kernel", "scan_experts_kernel", "scatter_pairs_kernel", "fill_blocks_kernel"} <= kernels
    assert all(" spill=0/0 " in line for line in lines), "\n".join(lines)
