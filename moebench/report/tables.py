"""Comparison tables from bench rows: implementations side by side per (preset, T).

Rows are read into a grid by moebench.report.grid, from moebench.bench (numbers) or a CSV (strings),
for any implementation name: registry implementations, and rows other tools add (kind "deployed",
names like "ort-cpu:portable") become extra columns. One table set per (device, dtype), so CSVs from
several machines can be concatenated and still read right.

Per (impl, cell) the fastest timed row counts (CUDA-graph replay beats eager when both exist).
Only rows that passed parity and drop no tokens can be "best"; failed ones show their time with
a ✗, token-dropping ones (capacity factor: less work, different output) with a †.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tabulate import tabulate

from moebench.report.grid import (
    DROPS_MARK,
    FAILED_MARK,
    Grid,
    Measurement,
    baseline_ms,
    best_of,
    group_rows,
    impl_order,
)


def fmt_number(value: float, digits: int = 3) -> str:
    """3 significant digits without exponent for the usual ranges: 0.0123, 1.23, 12.3, 1234."""
    if value is None or math.isnan(value):
        return "–"
    if math.isinf(value):
        return "inf"
    magnitude = abs(value)
    if magnitude >= 10 ** (digits - 1):
        return f"{value:.0f}"
    if magnitude == 0:
        return "0"
    decimals = digits - 1 - math.floor(math.log10(magnitude))
    return f"{value:.{max(decimals, 0)}f}"


def _time_cell(m: Measurement | None) -> str:
    if m is None:
        return ""
    if math.isnan(m.median_ms):
        return "error"
    return fmt_number(m.median_ms) + m.marks


def markdown_bold(text: str) -> str:
    return f"**{text}**"


def star(text: str) -> str:
    return f"{text} *"


@dataclass(frozen=True)
class Table:
    title: str
    text: str
    legend: str


def time_table(
    grid: Grid, baseline: str | None, *, fmt: str = "github", mark: Callable[[str], str] = markdown_bold
) -> str:
    """ms per implementation side by side (best marked), then the best's speedup, TFLOP/s, % ceilings."""
    impls = impl_order(grid, baseline)
    headers = ["preset", "T", *impls, "best", f"× {baseline}" if baseline else "speedup"]
    headers += ["TFLOP/s", "% GEMM", "weight GB/s", "% copy"]
    body = []
    for key, cell in grid.items():
        winners, best = best_of(cell)
        line = [key.label, str(key.num_tokens)]
        for name in impls:
            text = _time_cell(cell.get(name))
            line.append(mark(text) if name in winners else text)
        if best is None:
            line += ["–"] * 6
        else:
            base = baseline_ms(cell, baseline)
            line += [
                ", ".join(winners),
                fmt_number(base / best.median_ms) if not math.isnan(base) else "–",
                fmt_number(best.tflops),
                fmt_number(best.pct_gemm),
                fmt_number(best.weight_gbps),
                fmt_number(best.pct_copy),
            ]
        body.append(line)
    return tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True)


def speedup_table(
    grid: Grid, baseline: str | None, *, fmt: str = "github", mark: Callable[[str], str] = markdown_bold
) -> str:
    """Speedup vs the baseline per implementation side by side (the fastest marked)."""
    impls = impl_order(grid, baseline)
    body = []
    for key, cell in grid.items():
        winners, _ = best_of(cell)
        base = baseline_ms(cell, baseline)
        line = [key.label, str(key.num_tokens)]
        for name in impls:
            m = cell.get(name)
            if m is None or math.isnan(m.median_ms) or math.isnan(base):
                text = "" if m is None else "–"
            else:
                text = fmt_number(base / m.median_ms) + m.marks
            line.append(mark(text) if name in winners and text else text)
        body.append(line)
    return tabulate(body, headers=["preset", "T", *impls], tablefmt=fmt, disable_numparse=True)


def comparison_tables(
    rows: Iterable[dict],
    *,
    baseline: str | None = None,
    fmt: str = "github",
    mark: Callable[[str], str] = markdown_bold,
) -> list[Table]:
    """Time and speedup tables for every (device, dtype) group of `rows`."""
    rows = list(rows)
    if baseline is None:
        baseline = next((str(r["baseline"]) for r in rows if r.get("baseline")), None)
    tables = []
    for (device, dtype), grid in group_rows(rows).items():
        marked = "bold" if mark is markdown_bold else "marked *"
        legend_time = (
            f"Median ms (CUDA-graph replay where the implementation is graph-safe, else eager); best per row {marked}; "
            f"{FAILED_MARK.strip()} = failed parity, {DROPS_MARK.strip()} = drops tokens (capacity factor): "
            "never best. "
            "TFLOP/s, GB/s and % of the measured ceilings are the best's."
        )
        tables.append(
            Table(f"{device} · {dtype} · time (ms)", time_table(grid, baseline, fmt=fmt, mark=mark), legend_time)
        )
        if baseline:
            tables.append(
                Table(
                    f"{device} · {dtype} · speedup vs {baseline}",
                    speedup_table(grid, baseline, fmt=fmt, mark=mark),
                    f"{baseline}'s best time / each implementation's best time; fastest per row {marked}.",
                )
            )
    return tables
