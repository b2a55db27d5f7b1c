"""PNG plots from bench rows (matplotlib, Agg backend: no display needed).

* speedup-<device>-<dtype>.png: speedup vs the baseline over T (log-log, axis labelled 0.5×, 1×, 2×),
  one panel per preset, one line per implementation (any name, deployed ones dashed; token-dropping
  ones dotted and marked †, explained under the plot), error bars from the p20..p80 spread.
* roofline-<device>-<dtype>.png: achieved TFLOP/s vs arithmetic intensity (FLOPs per byte of
  expert weights read), each point labelled with its preset and T, with the dense-GEMM and
  memory-bandwidth ceilings measured in the same run.
Only valid rows (parity passed, under the ceilings) are drawn.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from moebench.report.grid import DROPS_MARK, Grid, baseline_ms, group_rows, impl_order

DROPS_NOTE = f"{DROPS_MARK.strip()} drops tokens (capacity factor): less work than the others, never counted as best"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "unknown"


def _presets(grid: Grid) -> list[str]:
    return list(dict.fromkeys(key.label for key in grid))


def ratio_label(value: float) -> str:
    """1×, 2×, 0.5×, 0.25×, 0.125×, then 1/16×, 1/512× (never 6×10⁻¹ or 0.00195312×)."""
    if value >= 1 or value in (0.5, 0.25, 0.125):
        return f"{value:g}×"
    return f"1/{1 / value:.3g}×"


def _ratio_axis(ax, values: list[float]) -> None:
    """Log y axis with plain ratio labels at powers of two: 0.25×, 0.5×, 1×, 2×, 4×."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    lo = math.floor(math.log2(min(values + [1.0]) * 0.9))
    hi = math.ceil(math.log2(max(values + [1.0]) * 1.1))
    step = max(1, math.ceil((hi - lo) / 8))
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(FixedLocator([2.0**e for e in range(lo, hi + 1, step)]))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: ratio_label(v)))
    ax.set_ylim(2.0**lo, 2.0**hi)


def plot_speedup(grid: Grid, baseline: str, title: str, path: Path) -> Path | None:
    """One panel per preset: speedup vs `baseline` over T for every implementation."""
    from matplotlib.ticker import NullLocator

    presets = _presets(grid)
    impls = impl_order(grid, baseline)
    if not presets or not impls:
        return None
    plt = _pyplot()
    cols = min(3, len(presets))
    rows = math.ceil(len(presets) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, preset in zip(axes.flat, presets):
        cells = [(key, cell) for key, cell in grid.items() if key.label == preset]
        shown: list[float] = []
        for name in impls:
            points = []
            for key, cell in cells:
                m, base = cell.get(name), baseline_ms(cell, baseline)
                if m is not None and m.passed and not math.isnan(base):
                    low = base / m.p80_ms if m.p80_ms > 0 else base / m.median_ms
                    high = base / m.p20_ms if m.p20_ms > 0 else base / m.median_ms
                    points.append((key.num_tokens, base / m.median_ms, low, high, m.drops_tokens))
            if points:
                xs, ys, lows, highs, drops = zip(*sorted(points))
                style = ":" if any(drops) else ("--" if ":" in name else "-")
                errors = [[max(0, y - lo) for y, lo in zip(ys, lows)], [max(0, hi - y) for y, hi in zip(ys, highs)]]
                label = name + (DROPS_MARK if any(drops) else "")
                ax.errorbar(xs, ys, yerr=errors, marker="o", label=label, linestyle=style, capsize=2)
                shown += [*lows, *highs]
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({key.num_tokens for key, _ in cells if key.num_tokens > 0}))
        ax.xaxis.set_major_formatter("{x:g}")
        ax.xaxis.set_minor_locator(NullLocator())
        _ratio_axis(ax, [v for v in shown if v > 0 and math.isfinite(v)])
        ax.set_title(preset, fontsize=9)
        ax.set_xlabel("tokens T")
        ax.set_ylabel(f"speedup vs {baseline}")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(presets) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.035), ncol=min(len(labels), 5), fontsize=8
        )
    notes = "error bars: p20..p80 of the samples" + ("; " + DROPS_NOTE if any(DROPS_MARK in x for x in labels) else "")
    fig.text(0.5, 0.005, notes, ha="center", va="bottom", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.12, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_roofline(grid: Grid, title: str, path: Path) -> Path | None:
    """Achieved TFLOP/s vs FLOPs per weight byte, with the measured GEMM and memory ceilings; every
    point labelled with its preset and T."""
    points: dict[str, list[tuple[float, float, str]]] = {}
    gemm, mem = math.nan, math.nan
    for key, cell in grid.items():
        for name, m in cell.items():
            if not m.passed or not (m.weight_bytes > 0 and m.tflops > 0):
                continue
            where = f"{key.label} T={key.num_tokens}"
            points.setdefault(name + (DROPS_MARK if m.drops_tokens else ""), []).append(
                (m.flops / m.weight_bytes, m.tflops, where)
            )
            gemm = m.gemm_ceiling if math.isnan(gemm) else gemm
            mem = m.mem_ceiling if math.isnan(mem) else mem
    if not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    all_x = [x for pts in points.values() for x, _, _ in pts]
    lo, hi = min(all_x) / 2, max(all_x) * 2
    if not math.isnan(mem) and not math.isnan(gemm):
        ridge = gemm * 1000 / mem  # FLOP/byte where bandwidth meets compute
        xs = [lo, min(max(ridge, lo), hi * 4), hi * 4]
        ax.plot(xs, [min(gemm, x * mem / 1000) for x in xs], color="black", linewidth=1.5, label="measured ceilings")
        ax.axhline(gemm, color="black", linestyle=":", linewidth=0.8)
        ax.annotate(f"GEMM {gemm:.3g} TFLOP/s", (xs[-1], gemm), ha="right", va="bottom", fontsize=8)
        ax.annotate(f"memory {mem:.4g} GB/s", (lo, lo * mem / 1000), ha="left", va="bottom", fontsize=8, rotation=20)
    labels: dict[tuple[float, str], float] = {}  # one label per cell, above its fastest point
    for name, pts in points.items():
        xs, ys, _ = zip(*pts)
        ax.scatter(xs, ys, label=name, s=22, marker="x" if ":" in name else "o")
        for x, y, where in pts:
            labels[(x, where)] = max(y, labels.get((x, where), 0.0))
    for (x, where), y in labels.items():
        ax.annotate(where, (x, y), xytext=(3, 4), textcoords="offset points", fontsize=6, alpha=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOPs per byte of expert weights read)")
    ax.set_ylabel("achieved TFLOP/s")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if any(DROPS_MARK in name for name in points):
        fig.text(0.5, 0.005, DROPS_NOTE, ha="center", va="bottom", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(rows: list[dict], out_dir: Path, baseline: str | None, split: tuple[str, ...] = ()) -> list[Path]:
    """Speedup and roofline PNGs for every (device, dtype) group; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _pyplot()  # matplotlib missing: ModuleNotFoundError before anything is written
    written = []
    for (device, dtype), grid in group_rows(rows, split).items():
        slug = f"{_slug(device)}-{dtype}"
        if baseline:
            path = plot_speedup(
                grid, baseline, f"speedup vs {baseline} · {device} · {dtype}", out_dir / f"speedup-{slug}.png"
            )
            if path:
                written.append(path)
        path = plot_roofline(grid, f"roofline · {device} · {dtype}", out_dir / f"roofline-{slug}.png")
        if path:
            written.append(path)
    return written
