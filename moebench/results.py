"""Results are data: long-format CSV, one measurement per row, every row self-describing.

Each row carries the environment (device name, torch/triton versions, date, command line) next
to what was measured, and `schema_version` (the row format), so files from different machines can
be concatenated and compared, and a file that is not moebench results is refused when read back.

Where files go by default: ./moebench-results/ in the current directory, or $MOEBENCH_RESULTS_DIR
(a command's --out overrides both). The repository's results/ holds only committed measurements.
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
import platform
import re
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path

import torch

from moebench.errors import MoEInputError

ENV_FIELDS = ("device_name", "device_type", "torch", "triton", "python", "date", "command")
SCHEMA_VERSION = "2"  # 2: schema_version, cache, spread and validity columns (1: unversioned, before them)
SCHEMA_FIELD = "schema_version"
RESULTS_DIR_ENV = "MOEBENCH_RESULTS_DIR"
# what must agree between rows for a report to put them in one table (else --allow-mixed)
RUN_FIELDS = ("device_name", "torch", "triton", "python", "threads")
REQUIRED_COLUMNS = ("impl", "kind", "preset", "E", "k", "H", "I", "dtype", "T", "median_ms", "status", "device_name")


def _triton_version() -> str:
    try:
        import triton

        return triton.__version__
    except ImportError:
        return "none"


_COMMAND: list[str] | None = None


def set_command(argv: list[str]) -> None:
    """Record the command line that produced results (the CLI calls this with its own argv, so
    in-process calls such as tests record `moebench ...`, not the host program's sys.argv)."""
    global _COMMAND
    _COMMAND = list(argv)


def command_line() -> str:
    argv = (
        _COMMAND
        if _COMMAND is not None
        else ["moebench" if sys.argv[0].endswith("moebench") else sys.argv[0], *sys.argv[1:]]
    )
    return " ".join(shlex.quote(a) for a in argv)


def _cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, e.g. "AMD EPYC" or "Intel(R) Xeon(R) ..."), else the
    architecture Python reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str | torch.device = "cpu") -> dict[str, str]:
    """Where and how a measurement was taken."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu: {_cpu_model()} ({os.cpu_count()} cores)"
    return {
        "device_name": name,
        "device_type": device.type,
        "torch": torch.__version__,
        "triton": _triton_version(),
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command_line(),
    }


def results_dir() -> Path:
    """Where output files go when --out is not given: $MOEBENCH_RESULTS_DIR, else ./moebench-results."""
    return Path(os.environ.get(RESULTS_DIR_ENV) or "moebench-results")


def default_path(kind: str, device: str | torch.device, suffix: str = ".csv") -> Path:
    """results_dir()/<kind>-<device slug>-<date-time><suffix>, e.g. bench-nvidia-h100-20260101-120000.csv."""
    device = torch.device(device)
    name = "cpu" if device.type == "cpu" else torch.cuda.get_device_name(device)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return results_dir() / f"{kind}-{slug}-{stamp}{suffix}"


def write_rows(path: str | Path, rows: Iterable[dict], *, append: bool = False) -> Path:
    """Write dict rows as CSV (columns: union of keys, environment fields and schema_version last)."""
    rows = [{**row, SCHEMA_FIELD: SCHEMA_VERSION} for row in rows]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    existing: list[dict] = read_rows(path) if append and path.exists() else []
    all_rows = existing + rows
    columns: list[str] = []
    for row in all_rows:
        for key in row:
            if key not in columns and key not in ENV_FIELDS:
                columns.append(key)
    columns += [f for f in ENV_FIELDS if any(f in r for r in all_rows)]
    columns = [c for c in columns if c != SCHEMA_FIELD] + [SCHEMA_FIELD]
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(all_rows)
    os.replace(tmp, path)
    return path


def read_rows(path: str | Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def read_results(path: str | Path) -> list[dict]:
    """Rows of a moebench results CSV; anything else (another CSV, an older format) raises MoEInputError."""
    path = Path(path)
    if not path.is_file():
        raise MoEInputError(f"csv: expected an existing results file, got {str(path)!r}")
    try:
        rows = read_rows(path)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise MoEInputError(f"csv: {path} is not a moebench results file ({exc})") from None
    columns = set(rows[0]) if rows else set()
    if SCHEMA_FIELD not in columns:
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        what = (
            "an older moebench results file (re-run the command that wrote it)"
            if not missing
            else (
                f"not a moebench results file (no {SCHEMA_FIELD} column; missing {', '.join(missing[:4])}"
                + (", ..." if len(missing) > 4 else "")
                + ")"
            )
        )
        raise MoEInputError(f"csv: {path} is {what}" if rows else f"csv: {path} has no rows")
    versions = sorted({r.get(SCHEMA_FIELD) or "" for r in rows})
    if versions != [SCHEMA_VERSION]:
        raise MoEInputError(
            f"csv: {path} has {SCHEMA_FIELD} {', '.join(map(repr, versions))}; this moebench reads {SCHEMA_VERSION!r}"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise MoEInputError(f"csv: {path} lacks the column(s) {', '.join(missing)} of a results file")
    return rows


def run_differences(sources: dict[str, list[dict]]) -> list[str]:
    """What differs between the runs in `sources` ({file: rows}), one text per column of RUN_FIELDS,
    e.g. "threads: 1 (a.csv) vs 2 (b.csv)"; empty when every row agrees."""
    out = []
    for field in RUN_FIELDS:
        seen: dict[str, str] = {}
        for name, rows in sources.items():
            for row in rows:
                seen.setdefault(str(row.get(field, "")), name)
        if len(seen) > 1:
            out.append(f"{field}: " + " vs ".join(f"{v or '(empty)'} ({n})" for v, n in seen.items()))
    return out
