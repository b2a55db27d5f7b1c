"""Cold-cache timing and ceilings: which cells are timed cold, the last-level cache's size, the flush,
and rows above a measured ceiling marked invalid (never shown as results)."""

from __future__ import annotations

import math

import pytest

from moebench import bench, coldcache
from moebench.ceilings import Ceilings
from moebench.coldcache import cache_state
from moebench.presets import get_preset
from moebench.report.grid import baseline_ms, group_rows
from moebench.report.tables import comparison_tables
from moebench.timing import Timing


def test_sizes_read_from_sys_and_lscpu_text(tmp_path):
    assert [coldcache.parse_size(t) for t in ("32768K", "32 MiB", "1024", "2M (1 instance)", "junk")] == [
        32 << 20, 32 << 20, 1024, 2 << 20, None,
    ]  # fmt: skip
    for name, (level, kind, size) in {"index0": (1, "Data", "32K"), "index2": (2, "Unified", "512K")}.items():
        (tmp_path / name).mkdir()
        for field, value in (("level", level), ("type", kind), ("size", size)):
            (tmp_path / name / field).write_text(f"{value}\n")
    assert coldcache._cpu_llc_from_sys(tmp_path) == 512 << 10  # the highest level, not the first listed
    assert coldcache.llc_bytes("cpu") > 0


def test_weight_bound_rule_is_the_ridge_point():
    spec = get_preset("small-8x2", "fp32")  # intensity = T * k / (2 * active experts) for swiglu fp32
    assert coldcache.arithmetic_intensity(spec, 1, 2) == pytest.approx(0.5)
    assert coldcache.is_weight_bound(spec, 1, 2, ridge_flops_per_byte=10.0)
    assert not coldcache.is_weight_bound(spec, 128, 8, ridge_flops_per_byte=10.0)  # intensity 16
    assert coldcache.is_weight_bound(spec, 128, 8, ridge_flops_per_byte=math.nan)  # unknown ridge: cold


def test_cache_state_follows_the_mode_and_flushes_the_buffer():
    spec = get_preset("small-8x2", "fp32")
    ceilings = Ceilings("cpu", {"fp32": 0.1}, 10.0)  # ridge 10 FLOP/byte
    assert ceilings.ridge("fp32") == pytest.approx(10.0)
    state, kwargs = cache_state("auto", spec, 1, 2, ceilings, "cpu")
    assert state == "cold" and set(kwargs) == {"before_each"}
    flusher = kwargs["before_each"].__self__
    assert flusher.bytes == coldcache.FLUSH_FACTOR * coldcache.llc_bytes("cpu")
    kwargs["before_each"]()
    assert float(flusher.total) == pytest.approx(flusher.bytes // 4, rel=1e-5)  # every element read
    assert cache_state("auto", spec, 128, 8, ceilings, "cpu") == ("warm", {})
    assert cache_state("warm", spec, 1, 2, ceilings, "cpu") == ("warm", {})
    assert cache_state("cold", spec, 128, 8, ceilings, "cpu")[0] == "cold"


def _row(impl, ms, ceilings, **kw):
    spec = get_preset("tiny", "fp32")
    timing = Timing(ms, 0.99 * ms, 1.01 * ms, 20, "cpu-process-time")
    return bench.make_row(impl=impl, kind="loop", spec=spec, num_tokens=4, timing=timing, n_active=4,
                          ceilings=ceilings, parity_ok=True, baseline="naive_loop", **kw)  # fmt: skip


def test_a_row_above_a_measured_ceiling_is_invalid_and_never_a_result():
    spec = get_preset("tiny", "fp32")
    fast_ms = spec.expert_weight_bytes(4) / 1e9 / 1.5 * 1e3  # 1.5 GB/s against a 1 GB/s memory ceiling
    ceilings = Ceilings("cpu", {"fp32": 1e3}, 1.0)
    rows = [_row("naive_loop", 10 * fast_ms, ceilings), _row("grouped_mm", fast_ms, ceilings, cache="warm")]
    assert rows[0]["status"] == "ok" and rows[0]["pct_mem_ceiling"] < 100
    assert rows[1]["status"] == "invalid" and "150% of the measured ceiling" in rows[1]["note"]
    assert rows[1]["cache"] == "warm"
    bench.fill_speedups(rows, "naive_loop")
    time_table, best_table, speedup_table = comparison_tables(rows, fmt="github")
    assert "invalid" in time_table.text and "invalid" in speedup_table.text
    assert "grouped_mm" not in best_table.text  # the fastest time is not the best: it is not a result
    # an invalid baseline is no denominator
    rows = [_row("naive_loop", fast_ms, ceilings), _row("grouped_mm", 10 * fast_ms, ceilings)]
    bench.fill_speedups(rows, "naive_loop")
    assert math.isnan(rows[1]["speedup"])
    (grid,) = group_rows(rows).values()
    assert math.isnan(baseline_ms(next(iter(grid.values())), "naive_loop"))  # nor the plots' denominator


def test_noisy_cells_are_flagged_and_their_speedups_not_facts():
    ceilings = Ceilings("cpu", {"fp32": 1e3}, 1e3)
    steady = _row("naive_loop", 2.0, ceilings)
    noisy = _row("grouped_mm", 1.0, ceilings)
    noisy.update(p20_ms=0.8, p80_ms=1.3, spread=0.5, noisy=True)
    assert steady["noisy"] is False and steady["spread"] == pytest.approx(0.02)
    time_table, _, speedup_table = comparison_tables([steady, noisy], fmt="github")
    assert "1.00 ±25% !" in time_table.text and "~2.00" in speedup_table.text
