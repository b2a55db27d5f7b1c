"""PNG plots from bench rows (matplotlib, Agg backend: no display needed).

* speedup-<device>-<dtype>.png: speedup vs the baseline over T (log-log), one panel per preset, one
  line per implementation (any name, deployed ones dashed; token-dropping ones dotted and marked †).
* roofline-<device>-<dtype>.png: achieved TFLOP/s vs arithmetic intensity (FLOPs per byte of
  expert weights read), with the dense-GEMM and copy ceilings measured in the same run.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from moebench.report.grid import Grid, baseline_ms, group_rows, impl_order


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "unknown"


def _presets(grid: Grid) -> list[str]:
    return list(dict.fromkeys(key.label for key in grid))


def plot_speedup(grid: Grid, baseline: str, title: str, path: Path) -> Path | None:
    """One panel per preset: speedup vs `baseline` over T for every implementation."""
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
        for name in impls:
            points = []
            for key, cell in cells:
                m, base = cell.get(name), baseline_ms(cell, baseline)
                if m is not None and m.passed and not math.isnan(base):
                    points.append((key.num_tokens, base / m.median_ms, m.drops_tokens))
            if points:
                xs, ys, drops = zip(*sorted(points))
                style = ":" if any(drops) else ("--" if ":" in name else "-")
                ax.plot(xs, ys, marker="o", label=name + (" †" if any(drops) else ""), linestyle=style)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(preset, fontsize=9)
        ax.set_xlabel("tokens T")
        ax.set_ylabel(f"speedup vs {baseline}")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(presets) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_roofline(grid: Grid, title: str, path: Path) -> Path | None:
    """Achieved TFLOP/s vs FLOPs per weight byte, with the measured GEMM and copy ceilings."""
    points: dict[str, list[tuple[float, float]]] = {}
    gemm, copy = math.nan, math.nan
    for cell in grid.values():
        for name, m in cell.items():
            if not m.passed or not (m.weight_bytes > 0 and m.tflops > 0):
                continue
            points.setdefault(name + (" †" if m.drops_tokens else ""), []).append((m.flops / m.weight_bytes, m.tflops))
            gemm = m.gemm_ceiling if math.isnan(gemm) else gemm
            copy = m.copy_ceiling if math.isnan(copy) else copy
    if not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    all_x = [x for pts in points.values() for x, _ in pts]
    lo, hi = min(all_x) / 2, max(all_x) * 2
    if not math.isnan(copy) and not math.isnan(gemm):
        ridge = gemm * 1000 / copy  # FLOP/byte where bandwidth meets compute
        xs = [lo, min(max(ridge, lo), hi * 4), hi * 4]
        ax.plot(xs, [min(gemm, x * copy / 1000) for x in xs], color="black", linewidth=1.5, label="measured ceilings")
        ax.axhline(gemm, color="black", linestyle=":", linewidth=0.8)
        ax.annotate(f"GEMM {gemm:.3g} TFLOP/s", (xs[-1], gemm), ha="right", va="bottom", fontsize=8)
        ax.annotate(f"copy {copy:.4g} GB/s", (lo, lo * copy / 1000), ha="left", va="bottom", fontsize=8, rotation=20)
    for name, pts in points.items():
        xs, ys = zip(*pts)
        ax.scatter(xs, ys, label=name, s=22, marker="x" if ":" in name else "o")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOPs per byte of expert weights read)")
    ax.set_ylabel("achieved TFLOP/s")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(rows: list[dict], out_dir: Path, baseline: str | None) -> list[Path]:
    """Speedup and roofline PNGs for every (device, dtype) group; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for (device, dtype), grid in group_rows(rows).items():
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
