"""scripts/gpu_session.sh, the GPU session's steps, smoke-run on the CPU with tiny shapes.

Device time is short, so a broken step must show here, not on the lent machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_session.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(step: str, out: Path, **env) -> subprocess.CompletedProcess:
    full_env = {
        **os.environ,
        "TRITON_INTERPRET": "1",
        "DEVICE": "cpu",
        "DTYPE": "fp32",
        "PRESETS": "tiny",
        "TOKENS": "1,5",
        **env,
    }
    return subprocess.run(["bash", str(SCRIPT), step, str(out)], cwd=ROOT, env=full_env, capture_output=True, text=True)


def test_bench_step_writes_results_and_report(tmp_path):
    proc = _run("bench", tmp_path, IMPLS="naive_loop,padded_batch", BENCH_ARGS="--quick --reps 3 --warmup 1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = (tmp_path / "bench.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2  # header + (2 impls x 2 token counts)
    assert "| " in (tmp_path / "report" / "report.md").read_text()
    assert (tmp_path / "env.txt").read_text().strip()


def test_a_failing_command_fails_the_step(tmp_path):
    proc = _run("verify", tmp_path, PRESETS="no-such-preset")
    assert proc.returncode != 0
    assert "no-such-preset" in (tmp_path / "verify.log").read_text()


def test_unknown_step_is_refused(tmp_path):
    proc = _run("nonsense", tmp_path)
    assert proc.returncode == 2
    assert "unknown step" in proc.stdout
