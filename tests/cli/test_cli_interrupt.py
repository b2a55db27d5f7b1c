"""Ctrl-C during a long command: one line on stderr, exit code 130, no traceback.

The command runs in its own process group and gets SIGINT the way a terminal sends it (to the whole
group), once it has printed its first line (so the signal lands in the work, not in Python's start-up).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

COMMANDS = {
    "verify": ["verify", "--device", "cpu", "--preset", "tiny,tiny-odd", "--cases", "200"],
    "bench": ["bench", "--device", "cpu", "--preset", "small-8x2", "--tokens", "128", "--reps", "5000", "--quick"],
    "tune": ["tune", "--device", "cpu", "--preset", "tiny", "--dtype", "fp32", "--impl", "triton_grouped", "--force"],
}


def _sigint_default() -> None:
    """A terminal's child starts with SIGINT at its default; a pytest-xdist worker ignores it, and an ignored
    signal stays ignored across exec (Python then installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("command", COMMANDS)
def test_ctrl_c_is_one_line_and_exit_130(command, tmp_path):
    argv = [sys.executable, "-m", "moebench", *COMMANDS[command]]
    argv += ["--out-dir", str(tmp_path / "configs")] if command == "tune" else []
    argv += ["--no-progress", "--out", str(tmp_path / "b.csv")] if command == "bench" else []
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MOEBENCH_RESULTS_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=_sigint_default,
    )
    try:
        first = proc.stdout.readline()  # the command's first line: it is past start-up
        assert first.startswith(f"moebench {command}"), first
        time.sleep(2.0)
        assert proc.poll() is None, "finished before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err + out, err
    assert proc.returncode == 130, (proc.returncode, err)
    assert len(lines) == 1 and "interrupted" in lines[0] and f"moebench {command}" in lines[0], err
