"""The session's test step: the repository's GPU and kernel tests, compiled, in parallel shards.

Tests that launch Triton kernels take the `triton_device` fixture (tests/conftest.py), which marks
them `kernels`; on a GPU they run compiled on CUDA tensors. Compiling their kernel variants is
most of their time and is CPU-bound, so `pytest -m EXPR --shard=i/n` runs in n processes at once
(one GPU is plenty for tiny shapes). Each shard's log goes into the session folder; shards still
running when the step's time is up (twice its estimate, within the deadline) are stopped, and the
shards' summaries are what the session reports.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from moebench.session.config import SessionConfig
from moebench.session.cost import CostModel

# counted on the CPU under the interpreter (2026-11-29): `pytest -m "gpu or kernels"` selects 101 tests, and
# the 89 that run there launch 338 distinct kernel variants (moebench.compile_check.variant_key, which
# matches Triton's own compile keys); the 12 GPU-only tests add some on their small presets
KERNEL_TESTS = 101
KERNEL_TEST_VARIANTS = 370
SECONDS_PER_TEST = 0.3  # a compiled tiny-shape test, its kernels already compiled
SHARD_START_S = 20.0  # one pytest process: imports, collection, CUDA context
# the CPU smoke run imports and collects every test to skip them: 91 s wall at load 10 on a 2-core EPYC (2026-11-29);
# its budget is twice this estimate
CPU_COLLECT_S = 50.0
MAX_SHARDS = 8
# addopts cleared: they name pytest-benchmark's options, and the GPU image has no pytest-benchmark
PYTEST_ARGS = ("-q", "-rfE", "-o", "addopts=", "-p", "no:randomly", "-p", "no:cacheprovider")
SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)")


def tests_dir() -> Path | None:
    """The repository's tests/ (an editable install's checkout), or None."""
    path = Path(__file__).resolve().parents[2] / "tests"
    return path if (path / "conftest.py").is_file() else None


def shard_count(device: str, cores: int) -> int:
    """Test processes at once: one per two cores on a GPU host, at most MAX_SHARDS; one on the CPU."""
    return max(1, min(MAX_SHARDS, cores // 2)) if device == "cuda" else 1


def estimate_s(config: SessionConfig, model: CostModel) -> float:
    if config.tests_expr == "gpu" and config.device != "cuda":
        return CPU_COLLECT_S  # the CPU smoke run: collection, every gpu test skipped
    shards = shard_count(config.device, model.rates.cpu_cores)
    compile_s = 0.0 if model.rates.interpreted else KERNEL_TEST_VARIANTS * model.rates.compile_s
    per_test = SECONDS_PER_TEST * (20 if model.rates.interpreted else 1)
    return SHARD_START_S + (compile_s + KERNEL_TESTS * per_test) / shards


def _summary(text: str) -> dict[str, int]:
    lines = [line for line in text.splitlines() if SUMMARY.search(line) and " in " in line]
    counts: dict[str, int] = {}
    for number, what in SUMMARY.findall(lines[-1] if lines else ""):
        counts[what.rstrip("s") if what.startswith("error") else what] = int(number)
    return counts


def run_tests(ctx) -> None:
    folder = tests_dir()
    if folder is None:
        ctx.log("  no tests/ folder next to the package (not an editable install): nothing to run")
        return
    shards = shard_count(ctx.device.type, ctx.model.rates.cpu_cores)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if ctx.device.type == "cuda":
        env.pop("TRITON_INTERPRET", None)
    else:
        env["TRITON_INTERPRET"] = "1"
    timeout = max(10.0, ctx.budget_s)
    procs = []
    for index in range(shards):
        log = ctx.work / f"pytest-{index + 1}-of-{shards}.log"
        cmd = [sys.executable, "-m", "pytest", *PYTEST_ARGS, "-m", ctx.config.tests_expr,
               f"--shard={index + 1}/{shards}", str(folder)]  # fmt: skip
        handle = open(log, "w")  # noqa: SIM115  (closed below, once the shard ends)
        procs.append((subprocess.Popen(cmd, cwd=folder.parent, env=env, stdout=handle, stderr=subprocess.STDOUT),
                      handle, log))  # fmt: skip
    end = time.monotonic() + timeout
    for proc, handle, log in procs:
        try:
            proc.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            handle.write(f"\n[moebench session] shard stopped: the step's time ({timeout:.0f} s) is up\n")
        handle.close()
        text = log.read_text(errors="replace")
        counts = _summary(text)
        failed = [line for line in text.splitlines() if line.startswith(("FAILED ", "ERROR "))]
        row = {"shard": log.stem, "returncode": proc.returncode, **counts, "failures": failed[:50]}
        ctx.tests.append(row)
        shown = ", ".join(f"{n} {what}" for what, n in counts.items()) or "no summary (stopped or crashed)"
        ctx.log(f"  {log.name}: {shown}")
        for line in failed[:10]:
            ctx.log(f"    {line[:200]}")
