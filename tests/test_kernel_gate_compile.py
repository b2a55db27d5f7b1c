"""The static kernel gate end to end, compiling the real kernels for sm_90 (Triton and ptxas, no GPU),
in subprocesses with the interpreter off: the unchanged tree passes; a config forced to spill fails;
a config that doubles a loop's work fails on its instruction count, as does a baseline doctored to
a lower count; a baseline of another Triton skips. And every default launch compiles under Triton
3.6, the GPU image's, and passes its own baseline (slow: about 65 s of CPU).

One launch site each (gpt-oss-20b at T = 1, triton_grouped's decode gate/up GEMM), compared with
the committed baseline of the installed Triton (skipped when there is none)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

from moebench.compile_check.baseline import baseline_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_DEFAULT_FP_FUSION": "1"}
SITE = "gpt-oss-20b/triton_grouped/1/decode_gate_up_kernel#0"
ONE_SITE = ["--presets", "gpt-oss-20b", "--tokens", "1", "--impl", "triton_grouped"]
ONE_SITE += ["--kernel", "decode_gate_up_kernel"]
# compile_check --space saw this decode tile spill on sm_90 (tests/triton_grouped: the space drops it)
SPILLING = {"decode_gate_up": dict(BLOCK_P=64, BLOCK_N=128, BLOCK_K=64, num_warps=4, num_stages=2)}
# the default at this site has BLOCK_K = 128: 256 doubles the K loop's body (loads, products)
DOUBLE_K = {"decode_gate_up": {"BLOCK_K": 256}}


def _gate(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "moebench.compile_check.gate", *args]
    return subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def baseline() -> dict:
    import triton

    path = baseline_path(triton.__version__)
    if not path.exists():
        pytest.skip(f"no kernel-gate baseline for the installed triton {triton.__version__}")
    return json.loads(path.read_text())


def _fails(proc, rule: str) -> list[str]:
    lines = [line for line in proc.stdout.splitlines() if line.startswith("FAIL:") and rule in line]
    assert proc.returncode == 1 and lines and SITE in lines[0], proc.stdout + proc.stderr
    return lines


@pytest.mark.slow
def test_unchanged_tree_passes(baseline):
    proc = _gate(*ONE_SITE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAIL" not in proc.stdout and ": PASS (" in proc.stdout.splitlines()[-1]


@pytest.mark.slow
def test_a_config_forced_to_spill_fails(baseline):
    _fails(_gate(*ONE_SITE, "--config", json.dumps(SPILLING)), "spills")


@pytest.mark.slow
def test_a_doubled_loop_body_fails_on_its_instruction_count(baseline):
    (line,) = _fails(_gate(*ONE_SITE, "--config", json.dumps(DOUBLE_K)), "SASS instructions")
    before, after = map(int, re.search(r"(\d+) -> (\d+) SASS", line).groups())
    assert after > before * 1.3


@pytest.mark.slow
def test_a_baseline_doctored_to_fewer_instructions_fails_only_on_that(baseline, tmp_path):
    doctored = json.loads(json.dumps(baseline))
    (entry,) = [e for e in doctored["variants"].values() if SITE in e["sites"]]
    entry["instructions"] = int(entry["instructions"] / 1.2)
    (tmp_path / "b.json").write_text(json.dumps(doctored))
    proc = _gate(*ONE_SITE, "--baseline", str(tmp_path / "b.json"))
    assert len(_fails(proc, "SASS instructions")) == len([ln for ln in proc.stdout.splitlines() if "FAIL:" in ln])


def test_a_baseline_of_another_triton_skips_naming_both_versions(baseline, tmp_path):
    other = {**baseline, "triton": "0.0.1"}
    (tmp_path / "b.json").write_text(json.dumps(other))
    proc = _gate(*ONE_SITE, "--baseline", str(tmp_path / "b.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (line,) = proc.stdout.splitlines()
    assert line.startswith("kernel gate: skipped") and "0.0.1" in line and baseline["triton"] in line


@pytest.mark.slow
def test_sass_count_is_what_cuobjdump_lists(tmp_path):
    """The cubin's .text section / 16 is the disassembler's instruction count, NOPs included."""
    script = f"""
import torch
from moebench.compile_check.cubin import sass_instructions
from moebench.compile_check.ptxas import compile_kernel
from moebench.compile_check.record import record_launches
from moebench.presets import get_preset
launch = record_launches(get_preset("tiny", torch.bfloat16), 5, impl="block_sparse")[-1]  # the combine
kernel, _ = compile_kernel(launch)
open({str(tmp_path / "k.cubin")!r}, "wb").write(kernel.asm["cubin"])
print(sass_instructions(kernel.asm["cubin"]))
"""
    proc = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    from triton import knobs

    sass = subprocess.run(
        [knobs.nvidia.cuobjdump.path, "-sass", str(tmp_path / "k.cubin")], capture_output=True, text=True, check=True
    ).stdout
    listed = len(re.findall(r"(?m)^\s+/\*[0-9a-f]{4,}\*/", sass))
    assert int(proc.stdout.split()[-1]) == listed > 0


@pytest.mark.slow
def test_every_default_launch_compiles_and_passes_under_triton_36():
    """Issue 15 item 4: the GPU image's Triton (3.6) compiles every default launch of the five real
    presets for sm_90 without a spill, and matches its own baseline (scripts/triton36_env.sh installs
    3.6 into .triton36/ on first use, from the package index)."""
    env36, env = ["bash", str(ROOT / "scripts" / "triton36_env.sh")], {**ENV, "PYTHON": sys.executable}
    ready = subprocess.run(env36, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if ready.returncode != 0:
        pytest.skip(f"triton 3.6.0 cannot be installed here: {ready.stderr.strip()[-300:]}")
    cmd = [*env36, sys.executable, "-m", "moebench.compile_check.gate"]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    last = proc.stdout.splitlines()[-1] if proc.stdout else ""
    assert proc.returncode == 0 and "triton 3.6.0" in last, proc.stdout + proc.stderr
    assert "; 0 spilling," in last and "not compiled" not in last and ": PASS (" in last, last
