"""moebench report: markdown tables with the best marked, any impl name as a column, valid PNGs."""

from __future__ import annotations

from pathlib import Path

import pytest

from moebench.cli import main
from moebench.report.grid import group_rows
from moebench.report.tables import comparison_tables, fmt_number
from moebench.results import read_rows, write_rows

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def row(impl, T, ms, *, kind="loop", preset="tiny", device="cpu: test (2 cores)", parity_ok=True, **extra):
    """A bench-like row (as read back from CSV: strings are fine too)."""
    flops = 6 * T * 2 * 32 * 48
    base = {
        "impl": impl, "kind": kind, "baseline": "naive_loop", "preset": preset, "E": 4, "k": 2, "H": 32, "I": 48,
        "activation": "swiglu", "dtype": "fp32", "T": T, "method": "cpu-wallclock", "median_ms": ms,
        "tflops": flops / (ms * 1e-3) / 1e12, "weight_gbps": 4 * 3 * 32 * 48 * 4 / (ms * 1e-3) / 1e9,
        "flops": flops, "weight_bytes": 4 * 3 * 32 * 48 * 4, "pct_gemm_ceiling": 1.0, "pct_mem_ceiling": 2.0,
        "gemm_ceiling_tflops": 0.3, "mem_ceiling_gbps": 20.0, "parity_ok": parity_ok,
        "parity_rel_l2": 1e-7 if parity_ok else 0.5, "status": "ok" if parity_ok else "parity-fail", "note": "",
        "device_name": device, "torch": "2.13", "triton": "3.9", "python": "3.11", "date": "d", "command": "c",
    }  # fmt: skip
    base.update(extra)
    return base


def sample_rows():
    rows = []
    for T, (naive, padded, ort, broken) in {1: (1.0, 2.0, 0.5, 0.1), 16: (4.0, 1.0, 3.0, 0.2)}.items():
        rows += [row("naive_loop", T, naive), row("padded_batch", T, padded, kind="padded")]
        rows.append(row("ort-cpu:portable", T, ort, kind="deployed"))
        rows.append(row("broken", T, broken, kind="peer", parity_ok=False))
    return rows


def test_best_per_cell_marked_and_deployed_columns(tmp_path):
    time_table, best_table, speedup_table = comparison_tables(sample_rows(), fmt="github")
    header = time_table.text.splitlines()[0]
    assert "ort-cpu:portable" in header and header.index("naive_loop") < header.index("ort-cpu:portable")
    lines = {line.split("|")[2].strip(): line for line in time_table.text.splitlines()[2:]}
    # T=1: ort (0.5) is best; "broken" (0.1) failed parity so it cannot be best
    assert "**0.500**" in lines["1"] and "0.100 ✗" in lines["1"] and "**0.100" not in lines["1"]
    assert "**1.00**" in lines["16"]  # padded_batch at T=16
    best_lines = {line.split("|")[2].strip(): line for line in best_table.text.split("\n\n")[0].splitlines()[2:]}
    assert best_lines["1"].split("|")[3].strip() == "ort-cpu:portable"  # the "best" column names it
    speed_lines = speedup_table.text.splitlines()[2:]
    assert "**2.00**" in speed_lines[0] and "**4.00**" in speed_lines[1]


def test_token_dropping_rows_are_marked_and_never_best():
    rows = [row("naive_loop", 8, 2.0), row("padded_batch_capacity", 8, 0.5, kind="padded", drops_tokens="True")]
    text = comparison_tables(rows, fmt="github")[0].text
    assert "0.500 †" in text and "**2.00**" in text and "**0.500" not in text


def test_tables_split_by_device_and_accept_csv_strings(tmp_path):
    rows = sample_rows() + [row("naive_loop", 1, 0.3, device="NVIDIA H100 80GB HBM3")]
    path = write_rows(tmp_path / "r.csv", rows)
    groups = group_rows(read_rows(path))
    assert set(groups) == {("cpu: test (2 cores)", "fp32"), ("NVIDIA H100 80GB HBM3", "fp32")}
    cell = next(iter(groups[("cpu: test (2 cores)", "fp32")].values()))
    assert cell["broken"].eligible is False and cell["naive_loop"].median_ms == pytest.approx(1.0)


def test_fastest_method_per_impl_counts():
    rows = [row("grouped_mm", 1, 2.0, method="cuda-events"), row("grouped_mm", 1, 1.0, method="cuda-graph")]
    cell = next(iter(group_rows(rows).values()))
    assert cell[next(iter(cell))]["grouped_mm"].method == "cuda-graph"


def test_report_cli_writes_markdown_and_pngs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv_path = write_rows(tmp_path / "bench-cpu.csv", sample_rows())
    assert main(["report", str(csv_path)]) == 0
    out_dir = tmp_path / "moebench-results" / "bench-cpu-report"  # default: under the results folder
    report = (out_dir / "report.md").read_text()
    assert "| preset" in report and "**0.500**" in report and "ort-cpu:portable" in report
    assert "## Parity failures, errors and invalid rows" in report and "broken" in report
    pngs = sorted(out_dir.glob("*.png"))
    assert {p.name.split("-")[0] for p in pngs} == {"speedup", "roofline"}
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 1000
        assert f"]({png.name})" in report
    assert "wrote" in capsys.readouterr().out


def test_report_of_a_real_bench_run(tmp_path):
    csv_path = tmp_path / "b.csv"
    argv = ["bench", "--device", "cpu", "--preset", "tiny", "--tokens", "4", "--dtype", "fp32", "--quick"]
    assert main([*argv, "--impl", "padded_batch", "--reps", "3", "--no-progress", "--out", str(csv_path)]) == 0
    assert main(["report", str(csv_path), "--out", str(tmp_path / "rep")]) == 0
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "padded_batch" in report and "naive_loop" in report and "None: every timed output passed parity" in report
    assert Path(tmp_path / "rep").glob("roofline-*.png")


def test_report_rejects_missing_file(tmp_path):
    assert main(["report", str(tmp_path / "nope.csv")]) == 2


def test_fmt_number():
    assert [fmt_number(v) for v in (0.012345, 1.2345, 12.345, 1234.5)] == ["0.0123", "1.23", "12.3", "1234"]
    assert fmt_number(float("nan")) == "–"


def test_report_lists_every_timed_row_with_its_spread_and_hides_invalid_times():
    from moebench.report.markdown import render_report

    rows = [
        row("naive_loop", 1, 2.0, p20_ms=1.9, p80_ms=2.3, runs=40, spread=0.2, noisy="True", cache="cold"),
        row("padded_batch", 1, 0.123, p20_ms=0.12, p80_ms=0.125, runs=50, spread=0.04, noisy="False", cache="cold"),
    ]
    rows[1].update(status="invalid", note="not a result: weight GB/s at 150% of the measured ceiling")
    text = render_report(rows, ["x.csv"], "naive_loop", [])
    section = text.split("## Every timed row: samples and spread")[1].split("##")[0]
    block = next(b for b in section.split("\n\n") if "naive_loop" in b)  # the first of its wrapped blocks
    headers = [c.strip() for c in block.splitlines()[0].split("|")]
    cells = [c.strip() for c in next(line for line in block.splitlines() if "naive_loop" in line).split("|")]
    wanted = {"cache": "cold", "samples": "40", "p20 ms": "1.90", "median ms": "2.00", "p80 ms": "2.30"}
    assert {h: cells[i] for i, h in enumerate(headers) if h in wanted} == wanted
    assert "| 20% noisy " in section
    assert "0.123" not in text and "0.120" not in text  # an invalid row's times appear nowhere
    assert "**invalid** not a result: weight GB/s at 150%" in text
