"""block_sparse under moebench.compile_check: the kernels it records (forward, backward), the
tuning-space sweep's backward kernels, and every kernel compiled for sm_90 without spills (slow,
ptxas, no GPU)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("triton")

from moebench.compile_check import record_launches, space_configs  # noqa: E402
from moebench.presets import get_preset  # noqa: E402


def _names(launches) -> list[str]:
    return [launch.kernel.__name__ for launch in launches]


ALIGN = ["count_experts_kernel", "scan_experts_kernel", "scatter_pairs_kernel", "fill_blocks_kernel"]
BSR_FORWARD = [*ALIGN, "bsr_layout_kernel", "sdd_forward_kernel", "dsd_kernel", "combine_kernel"]
BSR_BACKWARD = ["sdd_backward_kernel", "dsd_kernel", "combine_kernel", "sparse_t_dense_kernel"]


def test_block_sparse_forward_records_its_eight_kernels_on_meta():
    spec = get_preset("mixtral-8x7b", torch.bfloat16)  # real sizes: meta tensors hold no memory
    assert _names(record_launches(spec, 4096, impl="block_sparse")) == BSR_FORWARD


def test_block_sparse_backward_records_every_backward_kernel():
    spec = get_preset("tiny", torch.bfloat16)
    names = _names(record_launches(spec, 40, impl="block_sparse", backward=True))
    assert names[: len(BSR_FORWARD)] == BSR_FORWARD
    assert set(BSR_BACKWARD) <= set(names[len(BSR_FORWARD) :])
    assert names.count("sparse_t_dense_kernel") == 2  # dW1 and dW2


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
    assert all(" spill=0/0 " in line for line in lines), "\n".join(lines)
