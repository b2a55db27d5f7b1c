"""moebench session: the plan, its cost model, the deadline, the files in $OUT and their unpacking.

The GPU session runs rarely and briefly, so what can be checked without a GPU is checked here:
the default plan fits its deadline on an H200's nominal figures, an item that cannot finish is
skipped with a line, every output file is complete after every item, and the whole flow runs end
to end on the CPU (tiny presets, the interpreter) with the same file layout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from moebench.presets import get_preset
from moebench.session import plan as plan_mod
from moebench.session.config import for_device
from moebench.session.cost import LOAD_S, NOMINAL, POOL_START_S, CostModel
from moebench.session.output import OUT_FILES
from moebench.session.pytest_step import _summary
from moebench.session.unpack import device_folder, unpack

ROOT = Path(__file__).resolve().parents[1]
PRIORITY = ("environment", "tests", "verify", "bench", "tune")


def _h200_plan():
    model = CostModel(NOMINAL["h200"])
    plan = plan_mod.build_plan(for_device("cuda"), compiled=True)
    plan_mod.estimate(plan, model)
    return plan, model


def test_default_gpu_plan_fits_the_default_deadline_on_h200_nominal_figures():
    plan, model = _h200_plan()
    config = for_device("cuda")
    assert config.deadline_s == 540
    steps = [i.step for i in plan]
    assert steps == sorted(steps, key=plan_mod.STEPS.index), "items in priority order"
    priority = model.rates.startup_s + sum(i.estimate_s for i in plan if i.step in PRIORITY)
    assert priority <= config.deadline_s, f"steps 1-5 estimated at {priority:.0f} s"
    assert all(i.estimate_s > 0 for i in plan if i.kind in ("verify", "bench", "tune", "precompile"))
    labels = {i.label for i in plan}
    for preset in ("mixtral-8x7b", "qwen3-30b-a3b", "deepseek-v3"):
        assert {f"verify {preset} bf16 T={t}" for t in (1, 16, 1024, 16384)} <= labels
    assert sum(i.kind == "bench" and i.step == "bench" for i in plan) == 5 * 6  # every real preset x T
    # the quantised-expert extras come last, at low priority
    assert {i.step for i in plan if "+fp8-block128" in i.label or "+int4-g128" in i.label} == {"later"}


def test_kernel_variants_are_paid_for_once_and_the_pool_ahead_of_time():
    model = CostModel(NOMINAL["h200"])
    spec = get_preset("qwen3-30b-a3b", "bf16")
    variants = len(model.launches("triton_grouped", spec, 1024)[2])
    assert variants >= 5  # routing alignment, the two GEMMs, the combine
    first = model.verify_s(["triton_grouped"], spec, 1024)
    again = model.verify_s(["triton_grouped"], spec, 1024)
    assert first - again >= variants * NOMINAL["h200"].compile_s  # compiled and drawn once
    model.reset()
    ahead = model.precompile_s([("triton_grouped", spec, 1024)])  # 8 workers on the H200's 16-core host
    assert ahead == pytest.approx(POOL_START_S + variants * (NOMINAL["h200"].compile_s / 8 + LOAD_S))
    assert model.verify_s(["triton_grouped"], spec, 1024) == pytest.approx(first - variants * NOMINAL["h200"].compile_s)
    more = model.precompile_s([("triton_grouped", spec, 16)])  # the pool is started once
    assert 0 < more < POOL_START_S
    model.reset()
    assert model.verify_s(["grouped_mm"], spec, 1024) < again + 1.0  # no Triton kernels to compile


def test_measured_ceilings_replace_the_nominal_figures():
    from moebench.ceilings import Ceilings

    rates = NOMINAL["h200"].measured(Ceilings("cuda", {"bf16": 395.0, "fp64": 30.0}, 2150.0), "bf16")
    assert (rates.gemm_tflops, rates.fp64_tflops, rates.copy_gbps) == (395.0, 30.0, 2150.0)
    spec = get_preset("mixtral-8x7b", "bf16")
    slow, fast = CostModel(rates), CostModel(NOMINAL["h200"])
    assert slow.layer_s("grouped_mm", spec, 16384) == pytest.approx(2 * fast.layer_s("grouped_mm", spec, 16384), 0.01)


def test_the_baseline_is_timed_only_where_it_takes_seconds():
    from moebench.session.work import bench_impls

    config, model = for_device("cuda"), CostModel(NOMINAL["h200"])
    small = bench_impls(config, model, config.bench_impls, get_preset("qwen3-30b-a3b", "bf16"), 16, True)
    assert small[0] == "naive_loop"
    assert model.timing_s("naive_loop", get_preset("deepseek-v3", "bf16"), 16384, graph=False) > config.baseline_max_s
    big = bench_impls(config, model, config.bench_impls, get_preset("deepseek-v3", "bf16"), 16384, True)
    assert "naive_loop" not in big


def _runner(tmp_path, deadline):
    from moebench.session.runner import Runner

    config = replace(for_device("cpu"), deadline_s=deadline)
    return Runner(config, tmp_path / "out", tmp_path / "work")


def test_items_that_cannot_finish_are_skipped_with_a_line_and_every_file_is_written(tmp_path, capsys):
    runner = _runner(tmp_path, deadline=1e9)
    ran = []
    cheap = plan_mod.Item("verify", "cheap", "verify", lambda m: 1.0, lambda ctx: ran.append("cheap"))
    huge = plan_mod.Item("bench", "huge", "bench", lambda m: 1e12, lambda ctx: ran.append("huge"))
    broken = plan_mod.Item("tune", "broken", "tune", lambda m: 1.0, lambda ctx: 1 / 0)
    last = plan_mod.Item("later", "last", "verify", lambda m: 1.0, lambda ctx: ran.append("last"))
    runner.plan = [cheap, huge, broken, last]
    assert runner.run() == 1  # the broken item fails the session, after the rest has run
    assert ran == ["cheap", "last"]
    assert [i.status for i in runner.plan] == ["done", "skipped", "failed", "done"]
    out = capsys.readouterr().out
    assert "skip huge: needs ~1000000000000 s" in out and "FAILED broken: ZeroDivisionError" in out
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == sorted(OUT_FILES)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "- huge: needs ~1000000000000 s" in summary and "- broken: ZeroDivisionError" in summary
    manifest = json.loads((tmp_path / "out" / "session.json").read_text())
    assert [i["status"] for i in manifest["plan"]] == ["done", "skipped", "failed", "done"]


def test_pytest_summary_lines_are_read():
    text = "...\nFAILED tests/a.py::t - x\n==== 1 failed, 90 passed, 3 skipped, 2 errors in 9.1s ====\n"
    assert _summary(text) == {"failed": 1, "passed": 90, "skipped": 3, "error": 2}
    assert _summary("killed") == {}


@pytest.mark.parametrize(
    "name, kind, folder",
    [
        ("NVIDIA H200", "cuda", "h200"),
        ("NVIDIA H100 80GB HBM3", "cuda", "h100"),
        ("cpu: x86_64 (2 cores)", "cpu", "cpu"),
    ],
)
def test_results_folder_is_named_after_the_device_that_ran(name, kind, folder):
    assert device_folder(name, kind) == folder


@pytest.mark.slow
def test_the_session_runs_end_to_end_on_the_cpu_and_unpacks_into_results(tmp_path):
    """`DEVICE=cpu bash scripts/gpu_session.sh OUT`: tiny presets through the interpreter, within
    its deadline, the same files in OUT as on a GPU; then filed under results/cpu/."""
    out, work, deadline = tmp_path / "out", tmp_path / "work", 900
    env = {**os.environ, "DEVICE": "cpu", "PYTHON": sys.executable, "TRITON_INTERPRET": "1"}
    started = time.monotonic()
    cmd = ["bash", str(ROOT / "scripts" / "gpu_session.sh"), str(out), "--work", str(work), "--deadline", str(deadline)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=deadline + 120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert time.monotonic() - started < deadline
    assert sorted(p.name for p in out.iterdir()) == sorted(OUT_FILES)
    manifest = json.loads((out / "session.json").read_text())
    assert {i["status"] for i in manifest["plan"]} == {"done"}, [i for i in manifest["plan"] if i["status"] != "done"]
    verify = (out / "verify.csv").read_text()
    assert "FAIL" not in verify and verify.count("PASS") >= 3 * 2 + 1
    bench = (out / "bench.csv").read_text().splitlines()
    assert len(bench) > 1 + 2 * 3 and "cpu-wallclock" in bench[1]
    results = unpack(out, tmp_path / "results")
    assert results == tmp_path / "results" / "cpu"
    for name in ("summary.md", "bench.csv", "verify.csv", "tune.csv", "session.log", "report/report.md"):
        assert (results / name).is_file(), name
    assert list((tmp_path / "results" / "configs" / "cpu-interpreter").glob("triton_grouped__path__*.json"))
