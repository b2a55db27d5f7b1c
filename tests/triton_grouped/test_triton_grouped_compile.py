"""triton_grouped under moebench.compile_check: every tuning-space candidate is what the kernel is
launched with, and the GEMMs' weight tiles stream through 16-byte async copies on sm_90 (slow,
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


@pytest.mark.parametrize("fmt", ["fp8-block128", "mxfp4", "int4-g128", "int8-g128-asym"])
def test_quantised_experts_record_their_own_kernels_and_the_gate_sweeps_them(fmt):
    """On quantised experts the recorded launches are the quantised path's (what the static gate compiles),
    with quant_gemm's default config; the gate's sweep holds them and leaves out block_sparse, which refuses
    quantised experts."""
    from moebench.compile_check.sweep import QUANT_GATE_PRESETS, record_sites
    from moebench.kernels.triton_grouped.quant_space import QUANT_KEYS, quant_default

    spec = get_preset(f"mixtral-8x7b+{fmt}", torch.bfloat16)
    fp8_quant = 2 * (fmt == "fp8-block128")
    for tokens, kernel in ((128, "quant_grouped_kernel"), (16, "quant_decode_kernel")):  # T*k = 32: decode
        launches = record_launches(spec, tokens)
        names = _names(launches)
        assert names.count(kernel) == 2 and names.count("act_quant_kernel") == fp8_quant, (tokens, names)
        assert not {"grouped_gate_up_kernel", "grouped_down_kernel", "decode_gate_up_kernel"} & set(names)
        for launch in launches:
            if launch.kernel.__name__ == kernel:
                expected = quant_default(spec, tokens)
                assert {k: launch.kwargs[k] for k in QUANT_KEYS if k in launch.kwargs} == {
                    k: v for k, v in expected.items() if k != "GROUP_M" or kernel == "quant_grouped_kernel"
                }
    preset = f"mixtral-8x7b+{fmt}"
    if preset in QUANT_GATE_PRESETS:
        sites = record_sites([preset], [16, 128])
        assert {site.impl for site in sites} == {"triton_grouped"}
        assert sum(site.kernel == "quant_grouped_kernel" for site in sites) == 2
        assert sum(site.kernel == "quant_decode_kernel" for site in sites) == 2
