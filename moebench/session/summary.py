"""summary.md: what ran where, the plan against the clock, and the short tables of each step."""

from __future__ import annotations

import math

from tabulate import tabulate

from moebench.session.plan import STEP_TITLES, STEPS


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value)


def _plan_rows(plan) -> list[list]:
    rows = []
    for step in STEPS:
        items = [i for i in plan if i.step == step]
        if not items:
            continue
        counts = {s: sum(i.status == s for i in items) for s in ("done", "failed", "skipped", "pending")}
        estimate = sum(i.estimate_s for i in items)
        actual = sum(i.actual_s for i in items)
        status = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        rows.append([step, STEP_TITLES[step], status, f"{estimate:.0f}", f"{actual:.0f}"])
    return rows


def _bench_table(rows: list[dict]) -> str:
    """Median ms per (preset, T) and implementation, the CUDA-graph row where there is one."""
    cells: dict[tuple, dict[str, str]] = {}
    impls: list[str] = []
    for row in rows:
        if not isinstance(row.get("median_ms"), float):
            continue
        key, impl = (row["preset"], row["dtype"], int(row["T"])), str(row["impl"])
        impls += [impl] if impl not in impls else []
        graph = row.get("method") == "cuda-graph"
        if impl not in cells.setdefault(key, {}) or graph:
            flag = "" if row.get("parity_ok") in (True, "True") else " (parity FAIL)"
            cells[key][impl] = f"{row['median_ms']:.4g}{flag}"
    table = [[*key, *(cells[key].get(i, "") for i in impls)] for key in sorted(cells, key=str)]
    return tabulate(table, headers=["preset", "dtype", "T", *impls], tablefmt="github") if table else "(no timed rows)"


def render(manifest: dict, plan, ctx, elapsed_s: float, deadline_s: float, skipped: list[str]) -> str:
    out = ["# moebench session", ""]
    keys = ("device_name", "device_key", "sm_count", "memory_gb", "torch", "triton", "python", "date")
    env = ", ".join(f"{k}: {manifest[k]}" for k in keys if manifest.get(k) is not None)
    out += [f"- where: {env}", f"- command: `{manifest.get('command', '')}`"]
    if manifest.get("ceilings"):
        c = manifest["ceilings"]
        gemm = ", ".join(f"{k} {v:.4g} TFLOP/s" for k, v in c["gemm_tflops"].items())
        out.append(f"- ceilings measured at the start: GEMM {gemm}; copy {c['copy_gbps']:.4g} GB/s (read + write)")
    out.append(f"- estimates: {manifest.get('rates', '')}")
    out.append(f"- elapsed {elapsed_s:.0f} s of a {deadline_s:.0f} s deadline")
    out += ["", "## Plan", "", tabulate(_plan_rows(plan), headers=["step", "what", "items", "estimate s", "actual s"],
                                        tablefmt="github")]  # fmt: skip
    if skipped:
        out += ["", "Skipped (would not finish in the time left):", *(f"- {line}" for line in skipped)]
    failed = [f"- {i.label}: {i.detail}" for i in plan if i.status == "failed"]
    if failed:
        out += ["", "Failed items:", *failed]
    if ctx.tests:
        out += ["", "## Tests", ""]
        for shard in ctx.tests:
            counts = ", ".join(f"{shard[k]} {k}" for k in ("passed", "failed", "error", "skipped") if shard.get(k))
            out.append(f"- {shard['shard']}: {counts or 'no summary'} (exit {shard['returncode']})")
            out += [f"  - {line}" for line in shard["failures"]]
    if ctx.verify_rows:
        table = [[r["step"], r["impl"], r["preset"], r["dtype"], r["T"], r["result"], r["rel_l2"], r["tol"],
                  r["detail"][:100]] for r in ctx.verify_rows]  # fmt: skip
        heads = ["step", "impl", "preset", "dtype", "T", "result", "rel_l2", "tol", "detail"]
        out += ["", "## Verify (fp64 reference)", "", tabulate(table, headers=heads, tablefmt="github")]
    if ctx.bench_rows:
        out += ["", "## Bench: median ms (CUDA-graph rows where timed so)", "", _bench_table(ctx.bench_rows)]
        out += ["", "Full rows: bench.csv; tables and plots: report/ in session.tar.gz."]
    if ctx.tune_rows:
        keys = ["impl", "kernel", "preset", "T", "status", "ms", "default_ms", "speedup", "config"]
        table = [[_fmt(r[k]) for k in keys] for r in ctx.tune_rows]
        out += ["", "## Tuned vs default (layer time with the kernel's best config vs its default)", "",
                tabulate(table, headers=keys, tablefmt="github")]  # fmt: skip
    return "\n".join(out) + "\n"
