"""Running `moebench` the two ways the CLI tests need: in-process (fast; an exception escaping main
is a traceback and fails the test) and as a real subprocess (the installed entry point)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from moebench.cli import main


@dataclass
class Outcome:
    rc: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def assert_one_error_line(self, *needles: str, rc: int = 2) -> str:
        """Exit code `rc`, exactly one non-empty stderr line, naming every needle, no traceback."""
        assert "Traceback" not in self.err + self.out, self.err
        assert self.rc == rc, (self.rc, self.err, self.out[-2000:])
        assert len(self.err_lines) == 1, self.err
        line = self.err_lines[0]
        for needle in needles:
            assert needle in line, (needle, line)
        return line


def run_main(argv: list[str], capsys) -> Outcome:
    """`moebench ARGV` in this process."""
    capsys.readouterr()
    rc = main(list(argv))
    captured = capsys.readouterr()
    return Outcome(rc, captured.out, captured.err)


def run_process(argv: list[str], *, env: dict | None = None, cwd=None, timeout: float = 300) -> Outcome:
    """`python -m moebench ARGV` in a subprocess (what a user's shell runs)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "moebench", *argv],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def results_csv(path, *, threads: int = 1, device: str = "cpu: test (2 cores)", impls=("naive_loop", "grouped_mm")):
    """A small results file written the way `moebench bench` writes one (schema_version included)."""
    from moebench.results import write_rows

    rows = []
    for i, impl in enumerate(impls):
        ms = 1.0 + i
        rows.append(
            {
                "impl": impl, "kind": "loop", "baseline": impls[0], "preset": "tiny", "E": 4, "k": 2, "H": 32,
                "I": 48, "activation": "swiglu", "dtype": "fp32", "T": 8, "method": "cpu-wallclock",
                "threads": threads, "median_ms": ms, "p20_ms": 0.99 * ms, "p80_ms": 1.01 * ms, "runs": 20,
                "tflops": 1e-4, "weight_gbps": 0.1, "flops": 1e5, "weight_bytes": 1e5, "parity_ok": True,
                "status": "ok", "note": "", "device_name": device, "torch": "2.13", "triton": "3.9",
                "python": "3.11", "date": "d", "command": "moebench bench",
            }
        )  # fmt: skip
    return write_rows(path, rows)
