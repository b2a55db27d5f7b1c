"""The repository keeps its promises: README's commands are what CI runs, the tolerance table in
README is the code's table, and a plain (non-editable) wheel installs every source file, kernels/ and
export/ as moebench.kernels and moebench.export."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from moebench.tolerances import REL_L2_TOLERANCE, ROW_TOLERANCE

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S)
    assert block, "README's quick start needs a code block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_quick_start_has_exactly_two_commands():
    commands = _quick_start_commands()
    assert len(commands) == 2, commands
    assert "moebench bench" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    test_command = _quick_start_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines(), "the README's test command must appear verbatim in .ci/run"


def test_readme_tolerance_table_matches_code():
    names = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}
    for dtype, tol in REL_L2_TOLERANCE.items():
        row = re.search(rf"^\|\s*{names[dtype]}\s*\|\s*([0-9.e-]+)\s*\|\s*([0-9.e-]+)\s*\|", README, re.M)
        assert row, f"README tolerance table lacks {names[dtype]}"
        assert float(row.group(1)) == tol, names[dtype]
        assert float(row.group(2)) == ROW_TOLERANCE[dtype], f"{names[dtype]}: token row"


def test_required_top_level_layout():
    for path in (
        "pyproject.toml",
        "moebench",
        "kernels",
        "export",
        "results",
        "tests",
        "README.md",
        "tox.ini",
        ".ci/run",
    ):
        assert (ROOT / path).exists(), path


@pytest.mark.slow
def test_plain_wheel_installs_kernels_and_export_under_moebench(tmp_path):
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(tmp_path.glob("moebench-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    # every source file of the library is packaged, kernels/ and export/ under moebench/ (a package
    # missing from pyproject's list would be silently left out of the wheel)
    installed = {"moebench": "moebench", "kernels": "moebench/kernels", "export": "moebench/export"}
    for top, where in installed.items():
        for path in (ROOT / top).rglob("*.py"):
            assert f"{where}/{path.relative_to(ROOT / top).as_posix()}" in names, path
    assert "moebench/kernels/common/matmul.py" in names
    assert not any(n.startswith(("kernels/", "export/")) for n in names), "no generic top-level packages"
