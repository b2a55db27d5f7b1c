"""report.md: where the numbers come from, the comparison tables, problems, and the plots."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from moebench.report.grid import INVALID_TEXT, parse_number
from moebench.report.plots import write_plots
from moebench.report.tables import comparison_tables, fit, fmt_number
from moebench.results import RUN_FIELDS
from moebench.timing import SPREAD_BOUND

ENV_SUMMARY = (*RUN_FIELDS, "date", "command")


def _environments(rows: list[dict]) -> list[dict]:
    seen: dict[tuple, dict] = {}
    for row in rows:
        key = tuple(str(row.get(f, "")) for f in (*RUN_FIELDS, "command"))
        seen.setdefault(key, {f: str(row.get(f, "")) for f in ENV_SUMMARY})
    return list(seen.values())


def _ceilings(rows: list[dict]) -> list[str]:
    lines = {}
    for row in rows:
        gemm, mem = parse_number(row.get("gemm_ceiling_tflops")), parse_number(row.get("mem_ceiling_gbps"))
        if math.isnan(gemm) and math.isnan(mem):
            continue
        key = (row.get("device_name", ""), row.get("dtype", ""))
        lines.setdefault(
            key, f"- {key[0]} · {key[1]}: dense GEMM {fmt_number(gemm)} TFLOP/s, memory {fmt_number(mem, 4)} GB/s"
        )
    return list(lines.values())


def _problems(rows: list[dict]) -> list[str]:
    lines = []
    for row in rows:
        if str(row.get("status", "ok")) in ("ok", ""):
            continue
        lines.append(
            f"- {row.get('impl')} · {row.get('preset')} · {row.get('dtype')} · T={row.get('T')} · "
            f"{row.get('method') or '-'}: **{row.get('status')}** {row.get('note', '')}".rstrip()
        )
    return lines


SAMPLE_HEADERS = ["preset", "T", "implementation", "method", "cache", "samples", "p20 ms", "median ms", "p80 ms"]
SAMPLE_HEADERS += ["spread", "status"]


def samples_table(rows: list[dict]) -> str:
    """Every timed row: its p20, median and p80, the sample count, spread ((p80 - p20) / median,
    `noisy` above the bound) and status, so no figure in the tables above stands without its noise."""
    body = []
    for row in rows:
        median = parse_number(row.get("median_ms"))
        if math.isnan(median):
            continue
        spread = parse_number(row.get("spread"))
        noisy = str(row.get("noisy", "")).lower() == "true"
        spread_text = "–" if math.isnan(spread) else f"{100 * spread:.0f}%" + (" noisy" if noisy else "")
        times = [fmt_number(parse_number(row.get(c))) for c in ("p20_ms", "median_ms", "p80_ms")]
        if row.get("status") == "invalid":
            times = [INVALID_TEXT] * 3  # above a measured ceiling: not a result, not even here
        body.append(
            [str(row.get("preset", "")), str(row.get("T", "")), str(row.get("impl", "")), str(row.get("method", ""))]
            + [str(row.get("cache") or "–"), str(row.get("runs") or "–"), *times]
            + [spread_text, str(row.get("status", ""))]
        )
    return fit(SAMPLE_HEADERS, body, "github") if body else ""


def render_report(
    rows: list[dict],
    sources: Sequence[str],
    baseline: str | None,
    plots: Sequence[Path],
    split: tuple[str, ...] = (),
    plots_missing: str = "",
) -> str:
    """The markdown text of a report over `rows`."""
    out = ["# moebench report", ""]
    out.append("Results: " + ", ".join(f"`{s}`" for s in sources) + f" ({len(rows)} rows).")
    out.append("")
    out.append("## Environment")
    for env in _environments(rows):
        out.append("- " + " · ".join(f"{k}: {v}" for k, v in env.items() if v))
    ceilings = _ceilings(rows)
    if ceilings:
        out += ["", "## Ceilings measured in the same run", *ceilings]
    if split:
        out += ["", f"Runs differ in {', '.join(split)} (reported with --allow-mixed): each value has its own tables."]
    for table in comparison_tables(rows, baseline=baseline, fmt="github", split=split):
        out += ["", f"## {table.title}", "", table.text, "", f"_{table.legend}_"]
    samples = samples_table(rows)
    if samples:
        out += ["", "## Every timed row: samples and spread", "", samples]
        out += [
            "",
            f"_p20, median and p80 of the samples (ms); spread = (p80 - p20) / median, noisy above "
            f"{100 * SPREAD_BOUND:.0f}%; cache: cold (last-level cache flushed before each sample) or warm._",
        ]
    problems = _problems(rows)
    out += ["", "## Parity failures, errors and invalid rows"]
    out += problems or ["None: every timed output passed parity and stayed under the measured ceilings."]
    if plots or plots_missing:
        out += ["", "## Plots"]
        out += [f"![{p.stem}]({p.name})" for p in plots] or [f"Not drawn: {plots_missing}"]
    return "\n".join(out) + "\n"


def write_report(
    rows: list[dict], out_dir: Path, sources: Sequence[str], baseline: str | None, split: tuple[str, ...] = ()
) -> tuple[Path, list[Path]]:
    """Write report.md and the PNG plots into out_dir; returns (report path, plot paths).
    Without matplotlib the report is written without plots and says why."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if baseline is None:
        baseline = next((str(r["baseline"]) for r in rows if r.get("baseline")), None)
    plots, missing = [], ""
    try:
        plots = write_plots(rows, out_dir, baseline, split)
    except ModuleNotFoundError as exc:
        if exc.name != "matplotlib":
            raise
        missing = "matplotlib is not installed (pip install 'moebench[report]')"
    path = out_dir / "report.md"
    path.write_text(render_report(rows, sources, baseline, plots, split, missing))
    return path, plots
