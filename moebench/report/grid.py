"""Bench rows read into a grid: per (device, dtype), per cell (preset, shape, T), per implementation
the fastest measurement, with its spread, parity, validity and token-dropping marks.

Works on rows straight from moebench.bench (numbers) or read back from a CSV (strings), and on any
implementation name. Per (impl, cell) the fastest timed row counts (CUDA-graph replay beats eager
when both exist); only rows that passed parity, stay under the measured ceilings and drop no tokens
are eligible to be "best".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from moebench.registry import KINDS
from moebench.timing import SPREAD_BOUND

FAILED_MARK = " ✗"
DROPS_MARK = " †"
NOISY_MARK = " !"
INVALID_TEXT = "invalid"


def parse_number(value) -> float:
    """A float from a number or CSV string; NaN for '', None and junk."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _count(value) -> int:
    number = parse_number(value)
    return 0 if math.isnan(number) else int(number)


def parse_flag(value) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    return None


@dataclass(frozen=True)
class Measurement:
    """The fastest timed row of one implementation in one cell."""

    impl: str
    kind: str
    median_ms: float
    method: str
    tflops: float
    weight_gbps: float
    pct_gemm: float
    pct_mem: float
    flops: float
    weight_bytes: float
    gemm_ceiling: float
    mem_ceiling: float
    parity_ok: bool | None
    status: str
    drops_tokens: bool = False
    p20_ms: float = math.nan
    p80_ms: float = math.nan
    runs: int = 0
    cache: str = ""

    @property
    def invalid(self) -> bool:
        """Above a ceiling measured in the same run: not a result (moebench.bench marks it)."""
        return self.status == "invalid"

    @property
    def spread(self) -> float:
        """(p80 - p20) / median: the relative spread of the samples (NaN when not recorded)."""
        return (self.p80_ms - self.p20_ms) / self.median_ms if self.median_ms > 0 else math.nan

    @property
    def noisy(self) -> bool:
        """Spread above moebench.timing.SPREAD_BOUND: its time, and speedups from it, are not facts."""
        return self.spread > SPREAD_BOUND

    @property
    def passed(self) -> bool:
        """Timed, valid and not failing parity (plots show these)."""
        failed = self.parity_ok is False or self.status == "parity-fail"
        return not math.isnan(self.median_ms) and not failed and not self.invalid

    @property
    def eligible(self) -> bool:
        """Can be the best of its cell: passed and dropless (dropping tokens does less work)."""
        return self.passed and not self.drops_tokens

    @property
    def marks(self) -> str:
        failed = self.parity_ok is False or self.status == "parity-fail"
        marks = (FAILED_MARK if failed else "") + (DROPS_MARK if self.drops_tokens else "")
        return marks + (NOISY_MARK if self.noisy else "")


@dataclass(frozen=True)
class CellKey:
    preset: str
    shape: tuple[int, int, int, int]
    num_tokens: int
    activation: str = "swiglu"

    @property
    def shape_text(self) -> str:
        return ",".join(str(v) for v in self.shape)

    @property
    def label(self) -> str:
        """The preset's name (shapes are listed once per table, labelled E,k,H,I); a custom shape
        reads 'E,k,H,I=8,2,512,1024'."""
        label = f"E,k,H,I={self.shape_text}" if self.preset in (self.shape_text, "") else self.preset
        return label if self.activation in ("swiglu", "") else f"{label} {self.activation}"


def _measurement(row: dict) -> Measurement:
    return Measurement(
        impl=str(row.get("impl", "")),
        kind=str(row.get("kind", "")),
        median_ms=parse_number(row.get("median_ms")),
        method=str(row.get("method", "")),
        tflops=parse_number(row.get("tflops")),
        weight_gbps=parse_number(row.get("weight_gbps")),
        pct_gemm=parse_number(row.get("pct_gemm_ceiling")),
        pct_mem=parse_number(row.get("pct_mem_ceiling")),
        flops=parse_number(row.get("flops")),
        weight_bytes=parse_number(row.get("weight_bytes")),
        gemm_ceiling=parse_number(row.get("gemm_ceiling_tflops")),
        mem_ceiling=parse_number(row.get("mem_ceiling_gbps")),
        parity_ok=parse_flag(row.get("parity_ok")),
        status=str(row.get("status", "")),
        drops_tokens=bool(parse_flag(row.get("drops_tokens"))),
        p20_ms=parse_number(row.get("p20_ms")),
        p80_ms=parse_number(row.get("p80_ms")),
        runs=_count(row.get("runs")),
        cache=str(row.get("cache", "") or ""),
    )


def _better(new: Measurement, old: Measurement | None) -> bool:
    if old is None:
        return True
    if new.eligible != old.eligible:
        return new.eligible
    if math.isnan(old.median_ms):
        return not math.isnan(new.median_ms)
    return not math.isnan(new.median_ms) and new.median_ms < old.median_ms


Grid = dict[CellKey, dict[str, Measurement]]


def group_label(row: dict, split: tuple[str, ...] = ()) -> str:
    """The device name, plus `field=value` for each column in `split` (runs reported side by side)."""
    name = str(row.get("device_name") or "unknown device")
    extra = ", ".join(f"{f}={row.get(f, '') or '-'}" for f in split if f != "device_name")
    return f"{name} [{extra}]" if extra else name


def group_rows(rows: Iterable[dict], split: tuple[str, ...] = ()) -> dict[tuple[str, str], Grid]:
    """{(device label, dtype): {cell: {impl: fastest Measurement}}} in first-seen order; `split`
    names run columns (e.g. threads) whose values get their own groups."""
    groups: dict[tuple[str, str], Grid] = {}
    for row in rows:
        try:
            shape = tuple(int(parse_number(row[c])) for c in ("E", "k", "H", "I"))
            activation = str(row.get("activation") or "swiglu")
            key = CellKey(str(row["preset"]), shape, int(parse_number(row["T"])), activation)  # type: ignore[arg-type]
        except (KeyError, ValueError):
            continue  # not a measurement row
        group = (group_label(row, split), str(row.get("dtype", "")))
        cell = groups.setdefault(group, {}).setdefault(key, {})
        m = _measurement(row)
        if _better(m, cell.get(m.impl)):
            cell[m.impl] = m
    for group, grid in groups.items():
        presets = list(dict.fromkeys(k.label for k in grid))
        groups[group] = dict(sorted(grid.items(), key=lambda kv: (presets.index(kv[0].label), kv[0].num_tokens)))
    return groups


def impl_order(grid: Grid, baseline: str | None) -> list[str]:
    """Columns: the baseline, then by kind (loop ... peer, deployed, unknown), then first seen."""
    seen: dict[str, str] = {}
    for cell in grid.values():
        for name, m in cell.items():
            seen.setdefault(name, m.kind)
    names = list(seen)

    def rank(name: str) -> tuple:
        kind = seen[name]
        kind_rank = KINDS.index(kind) if kind in KINDS else len(KINDS)
        return (name != baseline, kind_rank, names.index(name))

    return sorted(names, key=rank)


def best_of(cell: dict[str, Measurement]) -> tuple[list[str], Measurement | None]:
    """Names tied for the fastest eligible time, and that measurement."""
    eligible = [m for m in cell.values() if m.eligible]
    if not eligible:
        return [], None
    fastest = min(eligible, key=lambda m: m.median_ms)
    return [m.impl for m in eligible if m.median_ms == fastest.median_ms], fastest


def contenders(cell: dict[str, Measurement], best: Measurement) -> list[str]:
    """Other eligible implementations whose p20..p80 range overlaps the best's: the samples do not
    separate them from the best, so the table says so instead of naming one winner."""
    out = []
    for m in cell.values():
        if m.eligible and m.impl != best.impl and not math.isnan(best.p80_ms) and m.p20_ms <= best.p80_ms:
            out.append(m.impl)
    return out


def baseline_ms(cell: dict[str, Measurement], baseline: str | None) -> float:
    """The baseline's time in `cell`, NaN when it did not pass (an invalid time is no denominator)."""
    m = cell.get(baseline) if baseline else None
    return m.median_ms if m is not None and m.passed else math.nan
