"""Results are data: long-format CSV, one measurement per row, every row self-describing.

Each row carries the environment (device name, torch/triton versions, date, command line) next
to what was measured, so files from different machines can be concatenated and compared.
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
import platform
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path

import torch

ENV_FIELDS = ("device_name", "device_type", "torch", "triton", "python", "date", "command")


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


def environment(device: str | torch.device = "cpu") -> dict[str, str]:
    """Where and how a measurement was taken."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu: {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"
    return {
        "device_name": name,
        "device_type": device.type,
        "torch": torch.__version__,
        "triton": _triton_version(),
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command_line(),
    }


def write_rows(path: str | Path, rows: Iterable[dict], *, append: bool = False) -> Path:
    """Write dict rows as CSV (columns: union of keys, environment fields last)."""
    rows = list(rows)
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
