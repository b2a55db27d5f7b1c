"""moebench bench on the CPU: rows, columns, parity flags, selection; no timing asserts."""

from __future__ import annotations

import math

import pytest
import torch

from moebench import bench, registry
from moebench.ceilings import Ceilings, measure_ceilings
from moebench.cli import main
from moebench.presets import get_preset
from moebench.reference import reference_moe
from moebench.results import ENV_FIELDS, read_rows
from moebench.weights import random_inputs, random_weights

FEW = bench.BenchOptions(warmup=1, reps=3, seed=7)


def test_cli_bench_writes_csv_with_columns_and_environment(tmp_path, capsys):
    out = tmp_path / "bench.csv"
    argv = ["bench", "--device", "cpu", "--preset", "tiny", "--tokens", "1,8", "--dtype", "fp32"]
    argv += ["--impl", "naive_loop,padded_batch", "--reps", "3", "--warmup", "1", "--quick", "--no-progress"]
    threads = torch.get_num_threads()
    try:
        assert main([*argv, "--threads", "1", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    rows = read_rows(out)
    assert len(rows) == 4  # 2 impls x 2 T, one method each on the CPU
    assert set(bench.ROW_COLUMNS) | set(ENV_FIELDS) <= set(rows[0])
    assert {(r["impl"], r["T"]) for r in rows} == {(i, t) for i in ("naive_loop", "padded_batch") for t in ("1", "8")}
    for row in rows:
        assert row["status"] == "ok" and row["parity_ok"] == "True" and float(row["parity_rel_l2"]) < 1e-4
        assert row["method"] == "cpu-process-time" and row["device_type"] == "cpu" and row["dtype"] == "fp32"
        assert row["threads"] == "1"
        assert row["preset"] == "tiny" and (row["E"], row["k"], row["H"], row["I"]) == ("4", "2", "32", "48")
        assert float(row["median_ms"]) > 0 and float(row["gemm_ceiling_tflops"]) > 0
        assert float(row["mem_ceiling_gbps"]) > 0 and 1 <= int(row["active_experts"]) <= 4
        assert row["cache"] in ("cold", "warm") and int(row["runs"]) == 3 and row["noisy"] in ("True", "False")
        assert int(row["weight_seed"]) >= 0 and int(row["input_seed"]) >= 0 and row["baseline"] == "naive_loop"
        assert row["torch"] == torch.__version__ and "bench" in row["command"]
    assert all(float(r["speedup"]) == 1.0 for r in rows if r["impl"] == "naive_loop")
    printed = capsys.readouterr().out
    assert "time (ms)" in printed and "speedup vs naive_loop" in printed and " *" in printed


def test_named_impl_is_joined_by_the_baseline_and_unknown_names_fail(tmp_path):
    selection = bench.select_impls(["padded_batch"], "cpu", "naive_loop")
    assert [i.name for i in selection.run] == ["naive_loop", "padded_batch"]
    assert main(["bench", "--device", "cpu", "--impl", "nope", "--out", str(tmp_path / "x.csv")]) == 2


@pytest.fixture
def scratch_impls():
    """Registered throw-away implementations; removed afterwards."""
    names = []

    def add(name, fn, **kw):
        registry.register(name, kind=kw.pop("kind", "loop"), description="test", **kw)(fn)
        names.append(name)
        return registry.get(name)

    yield add
    for name in names:
        registry.unregister(name)


def _zeros(x, weights, *, out=None, config=None):
    return out.zero_() if out is not None else torch.zeros_like(x)


def test_triton_impls_skipped_on_cpu_unless_named_and_unavailable_listed(scratch_impls):
    scratch_impls("_t_triton", _zeros, requires=("triton",))
    scratch_impls("_t_cuda_only", _zeros, devices=("cuda",))
    selection = bench.select_impls(None, "cpu", "naive_loop")
    skipped = dict(selection.skipped)
    assert "_t_triton" in skipped and "interpreter" in skipped["_t_triton"]
    assert dict(selection.unavailable)["_t_cuda_only"] == "runs on cuda only"
    assert "_t_triton" not in [i.name for i in selection.run]
    named = bench.select_impls(["_t_triton", "_t_cuda_only"], "cpu", "naive_loop")
    assert [i.name for i in named.run] == ["naive_loop", "_t_triton"]
    assert [n for n, _ in named.unavailable] == ["_t_cuda_only"]


def test_parity_failures_and_errors_are_flagged_not_fatal(scratch_impls):
    def unwritten(x, weights, *, out=None, config=None):
        return out  # leaves the NaN poison

    def crashing(x, weights, *, out=None, config=None):
        raise RuntimeError("kaboom")

    scratch_impls("_t_zeros", _zeros)
    scratch_impls("_t_unwritten", unwritten)
    scratch_impls("_t_crash", crashing)
    selection = bench.select_impls(["_t_zeros", "_t_unwritten", "_t_crash"], "cpu", "naive_loop")
    result = bench.run_bench(
        [get_preset("tiny", "fp32")], [5], selection, "cpu", baseline="naive_loop", ceilings=None, options=FEW
    )
    by_impl = {r["impl"]: r for r in result.rows}
    assert by_impl["naive_loop"]["status"] == "ok"
    assert by_impl["_t_zeros"]["status"] == "parity-fail" and by_impl["_t_zeros"]["parity_ok"] is False
    assert by_impl["_t_zeros"]["parity_rel_l2"] == pytest.approx(1.0)
    assert by_impl["_t_unwritten"]["status"] == "parity-fail" and "non-finite" in by_impl["_t_unwritten"]["note"]
    assert by_impl["_t_crash"]["status"] == "error" and "kaboom" in by_impl["_t_crash"]["note"]
    assert by_impl["_t_crash"]["median_ms"] == ""
    # the same seeds for every implementation of a cell, recorded
    assert len({(r["weight_seed"], r["input_seed"]) for r in result.rows}) == 1


def test_token_dropping_impl_checked_against_the_pairs_it_kept():
    selection = bench.select_impls(["padded_batch_capacity"], "cpu", "naive_loop")
    result = bench.run_bench(
        [get_preset("tiny-many", "fp32")], [40], selection, "cpu", baseline="naive_loop", ceilings=None, options=FEW
    )
    row = next(r for r in result.rows if r["impl"] == "padded_batch_capacity")
    assert row["status"] == "ok" and "drops tokens" in row["note"] and row["drops_tokens"] is True


def test_metrics_follow_the_spec():
    spec = get_preset("tiny", "fp32")
    ceilings = Ceilings("cpu", {"fp32": 2.0}, 100.0)
    metrics = bench.row_metrics(spec, 10, median_ms=1.0, n_active=3, ceilings=ceilings)
    assert metrics["flops"] == spec.flops(10) and metrics["weight_bytes"] == spec.expert_weight_bytes(3)
    assert metrics["tflops"] == pytest.approx(spec.flops(10) / 1e-3 / 1e12)
    assert metrics["pct_gemm_ceiling"] == pytest.approx(100 * metrics["tflops"] / 2.0)
    assert metrics["pct_mem_ceiling"] == pytest.approx(100 * metrics["weight_gbps"] / 100.0)
    assert math.isnan(bench.row_metrics(spec, 10, 1.0, 3, None)["pct_gemm_ceiling"])


def test_measure_callable_gives_a_deployed_row():
    spec = get_preset("tiny", "fp32")
    weights, x = random_weights(spec), random_inputs(spec, 6)
    active = bench.count_active_experts(x, weights)
    row = bench.measure_callable(
        lambda: reference_moe(x, weights), spec, 6, "cpu", "ort-cpu:portable", parity_error=1e-6, parity_ok=True,
        n_active=active, timing_kwargs={"reps": 3, "warmup": 1},
    )  # fmt: skip
    assert row["impl"] == "ort-cpu:portable" and row["kind"] == "deployed" and row["status"] == "ok"
    assert row["parity_tol"] == pytest.approx(1e-4) and row["median_ms"] > 0 and row["active_experts"] == active
    assert set(bench.ROW_COLUMNS) | set(ENV_FIELDS) <= set(row)


def test_quick_ceilings_are_measured():
    measured = measure_ceilings("cpu", ("fp32",), quick=True)
    assert measured.gemm("fp32") > 0 and measured.copy_gbps > 0 and math.isnan(measured.gemm("bf16"))
    assert measured.mem_gbps == max(measured.copy_gbps, measured.read_gbps) > 0
    assert "TFLOP/s" in measured.describe()
