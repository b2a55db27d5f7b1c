"""moebench.compile_check: recording launches on meta tensors, and the tuning-space sweep.

The recording tests need no compiler; the compile test runs ptxas for sm_90 (slow, no GPU).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("triton")

from moebench.compile_check import record_launches, space_configs  # noqa: E402
from moebench.presets import get_preset  # noqa: E402

ALIGN = ["count_experts_kernel", "scan_experts_kernel", "scatter_pairs_kernel", "fill_blocks_kernel"]
BSR_FORWARD = [*ALIGN, "bsr_layout_kernel", "sdd_forward_kernel", "dsd_kernel", "combine_kernel"]
BSR_BACKWARD = ["sdd_backward_kernel", "dsd_kernel", "combine_kernel", "sparse_t_dense_kernel"]


def _names(launches) -> list[str]:
    return [launch.kernel.__name__ for launch in launches]


def test_block_sparse_forward_records_its_eight_kernels_on_meta():
    spec = get_preset("mixtral-8x7b", torch.bfloat16)  # real sizes: meta tensors hold no memory
    assert _names(record_launches(spec, 4096, impl="block_sparse")) == BSR_FORWARD


def test_block_sparse_backward_records_every_backward_kernel():
    spec = get_preset("tiny", torch.bfloat16)
    names = _names(record_launches(spec, 40, impl="block_sparse", backward=True))
    assert names[: len(BSR_FORWARD)] == BSR_FORWARD
    assert set(BSR_BACKWARD) <= set(names[len(BSR_FORWARD) :])
    assert names.count("sparse_t_dense_kernel") == 2  # dW1 and dW2


def test_no_tokens_no_launches():
    spec = get_preset("tiny", torch.float16)
    assert record_launches(spec, 0, impl="block_sparse", backward=True) == []
    assert record_launches(spec, 0, impl="triton_grouped") == []


def test_unknown_impl_is_refused():
    with pytest.raises(ValueError, match="impl"):
        record_launches(get_preset("tiny", torch.float16), 4, impl="naive_loop")


@pytest.mark.parametrize("tokens", [1, 40])
def test_space_sweep_launches_each_candidate(tokens):
    """Every candidate the sweep yields is what the kernel is launched with (decode candidates
    come with a path selector that makes the decode kernels run, at any T)."""
    spec = get_preset("tiny", torch.float16)
    seen = set()
    for kernel, candidate, config in space_configs("triton_grouped", spec, tokens, backward=False):
        seen.add(kernel)
        if kernel == "path":
            continue
        launches = record_launches(spec, tokens, config)
        tile = {k: v for k, v in candidate.items() if k.startswith("BLOCK_")}
        matching = [
            launch for launch in launches if kernel.replace("decode_", "") in launch.kernel.__name__
            and all(launch.kwargs.get(k) == v for k, v in tile.items())
        ]  # fmt: skip
        assert matching, f"{kernel} candidate {candidate} was not launched: {_names(launches)}"
    assert {"gate_up", "down", "decode_gate_up", "decode_down"} <= seen


def test_space_sweep_skips_backward_kernels_unless_asked():
    spec = get_preset("tiny", torch.bfloat16)
    forward = {kernel for kernel, _, _ in space_configs("block_sparse", spec, 40, backward=False)}
    both = {kernel for kernel, _, _ in space_configs("block_sparse", spec, 40, backward=True)}
    assert forward == {"topology", "sdd", "dsd"}
    assert both == forward | {"sdd_bwd", "dsd_bwd", "wgrad"}


@pytest.mark.slow
def test_block_sparse_kernels_compile_for_sm90_without_spills():
    """Forward and backward kernels of block_sparse, compiled for the H100 by Triton and ptxas."""
    libtriton = pytest.importorskip("triton._C.libtriton")
    if not hasattr(libtriton, "native_specialize_impl"):
        pytest.skip("this triton has no native_specialize_impl (compile_check needs it)")
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_DEFAULT_FP_FUSION": "1"}
    cmd = [sys.executable, "-m", "moebench.compile_check", "--impl", "block_sparse", "--backward"]
    proc = subprocess.run([*cmd, "--preset", "tiny", "--tokens", "1,40"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("T=")]
    assert {line.split()[1].rstrip(":") for line in lines} == set(BSR_FORWARD + BSR_BACKWARD)
    assert all(" spill=0 " in line for line in lines), "\n".join(lines)


# -- graph safety: a layer that runs on meta tensors never reads device data on the host ----------
# Meta tensors hold no data, so .item(), .tolist(), bincount, nonzero and boolean masks raise on them.
# An implementation whose whole forward (and backward) runs on meta therefore has no host sync and no
# data-dependent shape: what a CUDA graph capture needs. The registry's graph_safe flag must agree.
@pytest.mark.parametrize("tokens", [1, 16, 4096])
@pytest.mark.parametrize("impl,backward", [("triton_grouped", False), ("block_sparse", False), ("block_sparse", True)])
def test_triton_layers_run_on_meta_tensors(impl, backward, tokens):
    spec = get_preset("qwen3-30b-a3b", torch.bfloat16)
    assert record_launches(spec, tokens, impl=impl, backward=backward)  # kernels recorded, torch code ran


@pytest.mark.parametrize("name", ["naive_loop", "padded_batch", "padded_batch_capacity", "grouped_mm"])
def test_graph_safe_flag_agrees_with_a_meta_run(name):
    import moebench.impls  # noqa: F401
    from moebench.compile_check.record import _empty_weights
    from moebench.registry import get

    info = get(name)
    ok, reason = info.available("cpu")
    if not ok:
        pytest.skip(reason)
    spec = get_preset("tiny", torch.bfloat16)  # bf16: torch._grouped_mm's meta kernel wants it
    x = torch.empty(5, spec.hidden, device="meta", dtype=spec.dtype)
    try:
        info.fn(x, _empty_weights(spec, "meta"))
        runs = True
    except (RuntimeError, NotImplementedError):
        runs = False
    assert runs == info.graph_safe


@pytest.mark.slow
def test_weight_tiles_stream_through_16_byte_async_copies():
    """The memory-bound habit, checked in the PTX for sm_90: every global -> shared copy of the GEMM
    kernels is 16 bytes wide, on gpt-oss (H = I = 2880: rows not a multiple of the tile)."""
    libtriton = pytest.importorskip("triton._C.libtriton")
    if not hasattr(libtriton, "native_specialize_impl"):
        pytest.skip("this triton has no native_specialize_impl (compile_check needs it)")
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_DEFAULT_FP_FUSION": "1"}
    cmd = [sys.executable, "-m", "moebench.compile_check", "--preset", "gpt-oss-20b", "--tokens", "1,4096"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    gemms = [line for line in proc.stdout.splitlines() if "gate_up_kernel" in line or "down_kernel" in line]
    assert len(gemms) == 4  # decode at T=1, grouped at T=4096
    for line in gemms:
        wide, total = map(int, line.split("cp.async16=")[1].split()[0].split("/"))
        assert wide == total > 0, line
