"""The regression gate's logic on synthetic pytest-benchmark JSON (nothing is timed here)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from moebench import regression

BASE_TIMES = {"naive_loop/small-8x2/T16": 4e-3, "padded_batch/small-8x2/T16": 5e-3, "grouped_mm/small-8x2/T16": 3e-3}
BASELINE_PATH = Path(__file__).parent / "benchmarks" / "baseline.json"


def session(times: dict[str, float], calibration: float = 1.5e-3, *, local: bool = True) -> dict:
    """A pytest-benchmark JSON: start/end calibrations plus one entry per benchmark."""
    benches = [
        {"name": f"test_calibration_{w}", "extra_info": {"role": "calibration"}, "stats": _stats(calibration)}
        for w in ("start", "end")
    ]
    for key, t in times.items():
        extra = {"key": key}
        if local:
            extra.update(calibration_min_s=calibration, calibration_median_s=calibration * 1.1)
        benches.append({"name": f"test_moe_layer[{key}]", "extra_info": extra, "stats": _stats(t)})
    return {"machine_info": {"node": "ci", "cpu": {"brand_raw": "cpu", "count": 2}}, "benchmarks": benches}


def _stats(t: float) -> dict:
    return {"min": t, "median": t * 1.1, "mean": t * 1.2}


@pytest.fixture
def baseline() -> dict:
    return regression.make_baseline([session(BASE_TIMES)])


def test_unchanged_run_passes(baseline):
    result = regression.check(session(BASE_TIMES), baseline)
    assert result.ok and not result.regressions and len(result.compared) == len(BASE_TIMES)
    assert "PASS" in regression.format_result(result)


def test_injected_2x_slowdown_of_one_implementation_fails(baseline):
    slow = {k: (2 * t if k.startswith("padded_batch/") else t) for k, t in BASE_TIMES.items()}
    result = regression.check(session(slow), baseline)
    assert not result.ok
    assert [c.key for c in result.regressions] == ["padded_batch/small-8x2/T16"]
    assert result.regressions[0].change == pytest.approx(2.0)
    assert "FAIL" in regression.format_result(result)


def test_slower_machine_is_normalised_away(baseline):
    # everything 1.8x slower, calibration included: same ratios, so the gate passes
    result = regression.check(session({k: 1.8 * t for k, t in BASE_TIMES.items()}, calibration=1.8 * 1.5e-3), baseline)
    assert result.ok
    assert max(c.change for c in result.compared) == pytest.approx(1.0)


def test_noise_below_threshold_passes_and_just_above_fails(baseline):
    noisy = dict(BASE_TIMES, **{"naive_loop/small-8x2/T16": 1.3 * BASE_TIMES["naive_loop/small-8x2/T16"]})
    assert regression.check(session(noisy), baseline).ok
    over = dict(BASE_TIMES, **{"naive_loop/small-8x2/T16": 1.55 * BASE_TIMES["naive_loop/small-8x2/T16"]})
    assert not regression.check(session(over), baseline).ok


def test_session_calibration_used_without_interleaved_one():
    base = regression.make_baseline([session(BASE_TIMES, local=False)])
    doubled = session({k: 2 * t for k, t in BASE_TIMES.items()}, calibration=2 * 1.5e-3, local=False)
    assert regression.check(doubled, base).ok
    slow = session({k: 2 * t for k, t in BASE_TIMES.items()}, local=False)
    assert len(regression.check(slow, base).regressions) == len(BASE_TIMES)


def test_best_of_sessions(baseline):
    burst = session({k: 2 * t for k, t in BASE_TIMES.items()})
    assert not regression.check(burst, baseline).ok
    assert regression.check([burst, session(BASE_TIMES)], baseline).ok  # noise in one session only
    assert not regression.check([burst, burst], baseline).ok  # a real slowdown shows in both


def test_missing_benchmark_fails_new_one_is_reported(baseline):
    fewer = {k: t for k, t in BASE_TIMES.items() if not k.startswith("grouped_mm")}
    result = regression.check(session(fewer), baseline)
    assert not result.ok and result.missing == ["grouped_mm/small-8x2/T16"]
    more = dict(BASE_TIMES, **{"new_impl/small-8x2/T16": 1e-3})
    result = regression.check(session(more), baseline)
    assert result.ok and result.new == ["new_impl/small-8x2/T16"]


def test_record_takes_median_over_runs():
    runs = [session({"a": t}) for t in (1e-3, 3e-3, 2e-3)]
    base = regression.make_baseline(runs)
    assert base["ratios"]["a"] == pytest.approx(2e-3 / 1.5e-3)
    assert base["runs"] == 3 and base["stat"] == "min" and base["threshold"] == regression.DEFAULT_THRESHOLD


def test_unusable_input_raises():
    with pytest.raises(regression.GateInputError, match="calibration"):
        regression.normalise({"benchmarks": [{"name": "x", "stats": _stats(1e-3)}]})
    with pytest.raises(regression.GateInputError, match="benchmark-enable"):
        regression.normalise({"benchmarks": []})
    with pytest.raises(regression.GateInputError, match="threshold"):
        regression.check(session(BASE_TIMES), regression.make_baseline([session(BASE_TIMES)]), threshold=0.9)


def test_cli_exit_codes(tmp_path, capsys):
    ok_json, slow_json, base_json = tmp_path / "ok.json", tmp_path / "slow.json", tmp_path / "base.json"
    ok_json.write_text(json.dumps(session(BASE_TIMES)))
    slow_json.write_text(json.dumps(session({k: 2 * t for k, t in BASE_TIMES.items()})))
    assert regression.main(["record", str(ok_json), "--out", str(base_json)]) == 0
    assert regression.main(["check", str(ok_json), "--baseline", str(base_json)]) == 0
    assert regression.main(["check", str(slow_json), "--baseline", str(base_json)]) == 1
    assert regression.main(["check", str(tmp_path / "none.json"), "--baseline", str(base_json)]) == 2
    assert "regression gate: FAIL" in capsys.readouterr().out


def _suite_module():
    path = Path(__file__).parent / "benchmarks" / "test_gate_benchmarks.py"
    spec = importlib.util.spec_from_file_location("gate_suite_for_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stored_baseline_matches_the_suite():
    suite = _suite_module()
    data = json.loads(BASELINE_PATH.read_text())
    ratios, stat, threshold = regression.load_baseline(data)
    expected = {f"{i}/{p}/T{t}" for i in suite.IMPLS for p in suite.PRESETS for t in suite.TOKENS}
    assert set(ratios) == expected
    assert stat == regression.DEFAULT_STAT and threshold == regression.DEFAULT_THRESHOLD
    assert all(r > 0 for r in ratios.values())
