"""The CI performance gate: pytest-benchmark results vs a stored baseline, machine-independent.

Method
  1. `tests/benchmarks` (marker `benchmark_gate`) times, in one pytest session, the MoE layer of
     naive_loop, padded_batch and grouped_mm on the small presets (fp32, T = 16 and 128, fixed
     seeds) and a calibration workload (a fixed fp32 256^3 matmul + a 16 MiB copy) at the start
     and at the end of the session. Everything runs single-threaded (torch.set_num_threads(1)) and
     is timed in process CPU time (time.process_time), so the core count and other jobs sharing
     the machine (preemption) barely move the numbers.
  2. Each benchmark's time is divided by the session's calibration time (geometric mean of the
     start and end calibrations): the ratio is "how many calibration units this layer costs",
     which stays put when the whole machine is faster or slower.
  3. The gate compares every ratio with the stored baseline's ratio and FAILS when
     current / baseline > THRESHOLD = 1.5 for any benchmark (or when a baseline benchmark is
     missing from the run). Given several sessions, each benchmark's lowest ratio is gated.
  Statistic: the minimum over rounds (noise only ever adds time, so the minimum is the most
  repeatable estimate; a real slowdown moves it as much as the median).
  Threshold: 1.5 sits well above the run-to-run spread of these ratios (within about ±10% in CPU
  time on a shared, oversubscribed 2-core VM) and well below an injected 2x slowdown (ratio 2.0).
  Benchmarks more than 1.5x *faster* than the baseline are reported: re-record to lock gains in.

Usage
  record: python -m moebench.regression record BENCH_JSON [BENCH_JSON ...] --out tests/benchmarks/baseline.json
          (several runs: each benchmark's baseline ratio is the median over them)
  check:  python -m moebench.regression check BENCH_JSON [BENCH_JSON ...] --baseline tests/benchmarks/baseline.json
          exit 0 = pass, 1 = regression (or missing benchmark), 2 = unusable input
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

BASELINE_FORMAT = "moebench-regression-baseline/1"
DEFAULT_THRESHOLD = 1.5
DEFAULT_STAT = "min"
CALIBRATION_ROLE = "calibration"
STATS = ("min", "median", "mean")


class GateInputError(ValueError):
    """A benchmark JSON or baseline file that the gate cannot use (exit code 2)."""


def benchmark_key(bench: dict) -> str:
    """A benchmark's identity: extra_info['key'] when the suite sets it, else the test name."""
    return str((bench.get("extra_info") or {}).get("key") or bench.get("name") or bench.get("fullname"))


def is_calibration(bench: dict) -> bool:
    return (bench.get("extra_info") or {}).get("role") == CALIBRATION_ROLE


@dataclass(frozen=True)
class Normalised:
    """One session: calibration time and every benchmark's time / calibration time."""

    calibration_s: float
    ratios: dict[str, float]
    times_s: dict[str, float]
    machine: dict = field(default_factory=dict)


def normalise(bench_json: dict, stat: str = DEFAULT_STAT) -> Normalised:
    """Ratios of one pytest-benchmark JSON (the output of --benchmark-json)."""
    if stat not in STATS:
        raise GateInputError(f"stat: expected one of {STATS}, got {stat!r}")
    benches = bench_json.get("benchmarks")
    if not isinstance(benches, list) or not benches:
        raise GateInputError("benchmark JSON: no 'benchmarks' list (was the suite run with --benchmark-enable?)")
    calibrations, times = [], {}
    for bench in benches:
        value = float((bench.get("stats") or {}).get(stat, math.nan))
        if not value > 0:
            raise GateInputError(f"benchmark {benchmark_key(bench)!r}: no positive '{stat}' in its stats")
        if is_calibration(bench):
            calibrations.append(value)
        else:
            times[benchmark_key(bench)] = value
    if not calibrations:
        raise GateInputError("benchmark JSON: no calibration benchmark (extra_info role='calibration')")
    calibration = math.exp(sum(math.log(c) for c in calibrations) / len(calibrations))
    machine = bench_json.get("machine_info") or {}
    summary = {k: machine.get(k) for k in ("node", "processor", "machine", "python_version") if machine.get(k)}
    cpu = machine.get("cpu") or {}
    if cpu.get("brand_raw"):
        summary["cpu"] = cpu["brand_raw"]
    if cpu.get("count"):
        summary["cores"] = cpu["count"]
    # a calibration interleaved with the benchmark's own rounds (extra_info) beats the session's
    local = {
        benchmark_key(b): float((b.get("extra_info") or {}).get(f"calibration_{stat}_s", math.nan))
        for b in benches
        if not is_calibration(b)
    }
    ratios = {k: v / (local[k] if local[k] > 0 else calibration) for k, v in times.items()}
    return Normalised(calibration, ratios, times, summary)


def make_baseline(runs: list[dict], stat: str = DEFAULT_STAT, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """A baseline from one or more benchmark JSONs: per benchmark the median ratio over the runs."""
    sessions = [normalise(run, stat) for run in runs]
    keys = sorted(set().union(*(s.ratios for s in sessions)))
    ratios = {k: statistics.median([s.ratios[k] for s in sessions if k in s.ratios]) for k in keys}
    return {
        "format": BASELINE_FORMAT,
        "stat": stat,
        "threshold": threshold,
        "runs": len(sessions),
        "recorded": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": sessions[0].machine,
        "calibration_s": statistics.median(s.calibration_s for s in sessions),
        "ratios": ratios,
    }


def load_baseline(data: dict, stat: str | None = None) -> tuple[dict[str, float], str, float | None]:
    """(ratios, stat, threshold) from a stored baseline or from a raw pytest-benchmark JSON."""
    if data.get("format") == BASELINE_FORMAT:
        ratios = data.get("ratios")
        if not isinstance(ratios, dict) or not ratios:
            raise GateInputError("baseline: 'ratios' is missing or empty")
        return {str(k): float(v) for k, v in ratios.items()}, str(data.get("stat", DEFAULT_STAT)), data.get("threshold")
    stat = stat or DEFAULT_STAT
    return normalise(data, stat).ratios, stat, None


@dataclass(frozen=True)
class Comparison:
    key: str
    baseline: float
    current: float

    @property
    def change(self) -> float:
        return self.current / self.baseline


@dataclass
class GateResult:
    threshold: float
    stat: str
    compared: list[Comparison]
    missing: list[str]
    new: list[str]
    calibration_s: float
    sessions: int = 1

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.compared if c.change > self.threshold]

    @property
    def improvements(self) -> list[Comparison]:
        return [c for c in self.compared if c.change < 1 / self.threshold]

    @property
    def ok(self) -> bool:
        return not self.regressions and not self.missing


def check(bench_json: dict | list[dict], baseline: dict, threshold: float | None = None) -> GateResult:
    """Compare a session (or the best of several) with the baseline.

    Several sessions: each benchmark's ratio is its lowest over them (a real slowdown shows in
    every session, a burst of noise rarely in all). Threshold: argument > baseline's > default.
    """
    base_ratios, stat, stored_threshold = load_baseline(baseline)
    threshold = float(threshold or stored_threshold or DEFAULT_THRESHOLD)
    if not threshold > 1:
        raise GateInputError(f"threshold: expected a number > 1, got {threshold}")
    sessions = [normalise(b, stat) for b in (bench_json if isinstance(bench_json, list) else [bench_json])]
    current: dict[str, float] = {}
    for session in sessions:
        for key, ratio in session.ratios.items():
            current[key] = min(ratio, current.get(key, math.inf))
    compared = [Comparison(k, base_ratios[k], current[k]) for k in base_ratios if k in current]
    missing = [k for k in base_ratios if k not in current]
    new = [k for k in current if k not in base_ratios]
    calibration = statistics.median(s.calibration_s for s in sessions)
    return GateResult(threshold, stat, compared, missing, new, calibration, len(sessions))


def format_result(result: GateResult) -> str:
    from tabulate import tabulate

    rows = []
    for c in sorted(result.compared, key=lambda c: -c.change):
        verdict = (
            "SLOWER: FAIL" if c.change > result.threshold else ("faster" if c.change < 1 / result.threshold else "ok")
        )
        rows.append([c.key, f"{c.baseline:.3f}", f"{c.current:.3f}", f"{c.change:.2f}x", verdict])
    lines = [
        f"regression gate: stat={result.stat}, threshold={result.threshold}x, best of {result.sessions} session(s), "
        f"session calibration={result.calibration_s * 1e3:.3f} ms",
        tabulate(rows, headers=["benchmark", "baseline ratio", "current ratio", "change", "verdict"]),
    ]
    lines += [f"MISSING from this run (in the baseline): {k}" for k in result.missing]
    lines += [f"new (not in the baseline, not gated): {k}" for k in result.new]
    if result.improvements:
        lines.append(f"{len(result.improvements)} benchmark(s) faster than 1/{result.threshold}: consider re-recording")
    verdict = "PASS" if result.ok else f"FAIL ({len(result.regressions)} regression(s), {len(result.missing)} missing)"
    lines.append(f"regression gate: {verdict}")
    return "\n".join(lines)


def _read_json(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GateInputError(f"{path}: cannot read JSON ({exc})") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moebench.regression", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="write a baseline from one or more pytest-benchmark JSON files")
    rec.add_argument("bench_json", nargs="+")
    rec.add_argument("--out", required=True, help="baseline file to write (e.g. tests/benchmarks/baseline.json)")
    rec.add_argument("--stat", default=DEFAULT_STAT, choices=STATS)
    rec.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    chk = sub.add_parser("check", help="compare a pytest-benchmark JSON with the baseline")
    chk.add_argument("bench_json", nargs="+", help="one or more sessions (best ratio per benchmark is gated)")
    chk.add_argument("--baseline", required=True)
    chk.add_argument("--threshold", type=float, default=None, help="override the baseline's threshold")
    args = parser.parse_args(argv)
    try:
        if args.command == "record":
            baseline = make_baseline([_read_json(p) for p in args.bench_json], args.stat, args.threshold)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(baseline, indent=2, sort_keys=True) + "\n")
            print(f"wrote {args.out}: {len(baseline['ratios'])} benchmarks from {baseline['runs']} run(s)")
            return 0
        result = check([_read_json(p) for p in args.bench_json], _read_json(args.baseline), args.threshold)
    except GateInputError as exc:
        print(f"regression gate: error: {exc}", file=sys.stderr)
        return 2
    print(format_result(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
