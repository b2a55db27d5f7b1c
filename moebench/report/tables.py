"""Comparison tables from bench rows: implementations side by side per (preset, T).

Rows are read into a grid by moebench.report.grid, from moebench.bench (numbers) or a CSV (strings),
for any implementation name: registry implementations, and rows other tools add (kind "deployed",
names like "ort-cpu:portable") become extra columns. One table set per (device, dtype), so CSVs from
several machines can be concatenated and still read right.

Three tables per group, each kept within `width` characters (implementation columns that do not fit
continue in a second block under the same preset/T columns, as pytest-benchmark and tritonbench wrap):
  * time: median ms ± half the p20..p80 spread per implementation, the fastest marked;
  * best: per row the fastest eligible implementation (and those its spread does not separate it
    from), its speedup, TFLOP/s, weight GB/s, % of the ceilings measured in the same run, cache state;
  * speedup vs the baseline per implementation; `~` where either time is noisy (not a measured fact).
Only rows that passed parity, stay under the ceilings and drop no tokens can be "best"; failed ones
show their time with a ✗, token-dropping ones (capacity factor: less work) with a †, rows above a
ceiling read "invalid".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tabulate import tabulate

from moebench.report.grid import (
    DROPS_MARK,
    FAILED_MARK,
    INVALID_TEXT,
    NOISY_MARK,
    Grid,
    Measurement,
    best_of,
    contenders,
    group_rows,
    impl_order,
)
from moebench.timing import SPREAD_BOUND

WIDTH = 120  # terminal columns a table must fit in
KEY_COLUMNS = 2  # preset, T: repeated in every block of a wrapped table


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


def _spread_text(m: Measurement) -> str:
    return "" if math.isnan(m.spread) else f" ±{50 * m.spread:.0f}%"


def _time_cell(m: Measurement | None) -> str:
    if m is None:
        return ""
    if m.invalid:
        return INVALID_TEXT
    if math.isnan(m.median_ms):
        return "error"
    return fmt_number(m.median_ms) + _spread_text(m) + m.marks


def _speedup(m: Measurement | None, cell: dict[str, Measurement], baseline: str | None) -> str:
    """base / m as text: '' when not measured, '–' when not computable, '~x' when either is noisy."""
    base = cell.get(baseline) if baseline else None
    if m is None:
        return ""
    if not m.passed or base is None or not base.passed:
        return INVALID_TEXT if m.invalid else "–"
    approx = "~" if (m.noisy or base.noisy) else ""
    return approx + fmt_number(base.median_ms / m.median_ms)


def markdown_bold(text: str) -> str:
    return f"**{text}**"


def star(text: str) -> str:
    return f"{text} *"


@dataclass(frozen=True)
class Table:
    title: str
    text: str
    legend: str


def fit(headers: list[str], body: list[list[str]], fmt: str, width: int = WIDTH) -> str:
    """tabulate, with the value columns split into blocks (each repeating the key columns) so that
    every line fits in `width` characters."""
    blocks: list[list[int]] = []
    values = list(range(KEY_COLUMNS, len(headers)))
    while values:
        take = len(values)
        while take > 1:
            cols = list(range(KEY_COLUMNS)) + values[:take]
            text = _render(headers, body, cols, fmt)
            if max(map(len, text.splitlines())) <= width:
                break
            take -= 1
        blocks.append(values[:take])
        values = values[take:]
    return "\n\n".join(_render(headers, body, list(range(KEY_COLUMNS)) + block, fmt) for block in blocks)


def _render(headers: list[str], body: list[list[str]], cols: list[int], fmt: str) -> str:
    return tabulate(
        [[line[c] for c in cols] for line in body],
        headers=[headers[c] for c in cols],
        tablefmt=fmt,
        disable_numparse=True,
    )


def time_table(
    grid: Grid, baseline: str | None, *, fmt: str = "github", mark: Callable[[str], str] = markdown_bold
) -> str:
    """Median ms ± half the p20..p80 spread per implementation side by side, the fastest marked."""
    impls = impl_order(grid, baseline)
    body = []
    for key, cell in grid.items():
        winners, _ = best_of(cell)
        line = [key.label, str(key.num_tokens)]
        for name in impls:
            text = _time_cell(cell.get(name))
            line.append(mark(text) if name in winners else text)
        body.append(line)
    return fit(["preset", "T", *impls], body, fmt)


def best_table(grid: Grid, baseline: str | None, *, fmt: str = "github") -> str:
    """Per row: the fastest eligible implementation, its speedup, throughput and % of the ceilings."""
    headers = ["preset", "T", "best", f"× {baseline}" if baseline else "speedup", "cache", "n"]
    headers += ["TFLOP/s", "% GEMM", "GB/s", "% mem"]
    body = []
    for key, cell in grid.items():
        winners, best = best_of(cell)
        line = [key.label, str(key.num_tokens)]
        if best is None:
            body.append(line + ["–"] * (len(headers) - 2))
            continue
        others = contenders(cell, best)
        name = " ≈ ".join([", ".join(winners), *others])
        if len(name) > 30:
            name = f"{', '.join(winners)} ≈ {len(others)} others"
        line += [name, _speedup(best, cell, baseline), best.cache or "–", str(best.runs or "–")]
        line += [fmt_number(best.tflops), fmt_number(best.pct_gemm), fmt_number(best.weight_gbps)]
        line += [fmt_number(best.pct_mem)]
        body.append(line)
    return fit(headers, body, fmt)


def speedup_table(
    grid: Grid, baseline: str | None, *, fmt: str = "github", mark: Callable[[str], str] = markdown_bold
) -> str:
    """Speedup vs the baseline per implementation side by side (the fastest marked)."""
    impls = impl_order(grid, baseline)
    body = []
    for key, cell in grid.items():
        winners, _ = best_of(cell)
        line = [key.label, str(key.num_tokens)]
        for name in impls:
            m = cell.get(name)
            text = _speedup(m, cell, baseline)
            text += m.marks.replace(NOISY_MARK, "") if m is not None and text not in ("", "–") else ""
            line.append(mark(text) if name in winners and text else text)
        body.append(line)
    return fit(["preset", "T", *impls], body, fmt)


def shapes_line(grid: Grid) -> str:
    """'shapes (E,k,H,I): small-8x2 = 8,2,512,1024; ...' for the presets in a table."""
    shapes = {key.label: key.shape_text for key in grid if not key.label.startswith("E,k,H,I=")}
    if not shapes:
        return "shapes: E,k,H,I = experts, top-k, hidden, intermediate"
    listed = "; ".join(f"{label} = {shape}" for label, shape in shapes.items())
    return f"shapes (E,k,H,I = experts, top-k, hidden, intermediate): {listed}"


def comparison_tables(
    rows: Iterable[dict],
    *,
    baseline: str | None = None,
    fmt: str = "github",
    mark: Callable[[str], str] = markdown_bold,
    split: tuple[str, ...] = (),
) -> list[Table]:
    """Time, best and speedup tables for every (device, dtype) group of `rows`."""
    rows = list(rows)
    if baseline is None:
        baseline = next((str(r["baseline"]) for r in rows if r.get("baseline")), None)
    marked = "bold" if mark is markdown_bold else "marked *"
    marks = (
        f"{FAILED_MARK.strip()} failed parity; {DROPS_MARK.strip()} drops tokens (capacity factor: less work, "
        f"never best); {NOISY_MARK.strip()} noisy: spread (p80 - p20) / median above {100 * SPREAD_BOUND:.0f}%; "
        f"{INVALID_TEXT}: above a ceiling measured in the same run (not a result)."
    )
    tables = []
    for (device, dtype), grid in group_rows(rows, split).items():
        shapes = shapes_line(grid)
        tables.append(
            Table(
                f"{device} · {dtype} · time (ms)",
                time_table(grid, baseline, fmt=fmt, mark=mark),
                f"{shapes}. Median ms ± half the p20..p80 spread (CUDA-graph replay where graph-safe, else eager); "
                f"fastest per row {marked}. {marks}",
            )
        )
        tables.append(
            Table(
                f"{device} · {dtype} · best per row",
                best_table(grid, baseline, fmt=fmt),
                "The fastest eligible implementation (≈: others whose p20..p80 range overlaps it); its speedup, "
                "cache: cold (last-level cache flushed before each sample) or warm, n samples, TFLOP/s, GB/s of "
                "expert weights read, and % of the dense-GEMM and memory-bandwidth ceilings measured in the same run.",
            )
        )
        if baseline:
            tables.append(
                Table(
                    f"{device} · {dtype} · speedup vs {baseline}",
                    speedup_table(grid, baseline, fmt=fmt, mark=mark),
                    f"{baseline}'s median / each implementation's median; fastest per row {marked}; "
                    f"~: either time is noisy (spread above {100 * SPREAD_BOUND:.0f}%), not a measured fact.",
                )
            )
    return tables
