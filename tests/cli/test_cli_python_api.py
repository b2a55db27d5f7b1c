"""The README's Python, as a new user runs it: in a fresh interpreter, without the test suite's
TRITON_INTERPRET, on whatever device this machine has."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _python(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_readme_python_example_runs_as_written():
    example = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S) if "get_preset" in b)
    done = _python(example + "\nprint('shape', tuple(y.shape), bool(y.isfinite().all()))\n")
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"shape \(128, \d+\) True", done.stdout.strip().splitlines()[-1]), done.stdout


def test_hf_is_reachable_from_the_package():
    done = _python("import moebench; print(moebench.hf.weights_from_hf.__name__)")
    assert done.returncode == 0 and done.stdout.strip() == "weights_from_hf", done.stderr


def test_triton_on_cpu_tensors_without_the_interpreter_says_how_to_run_it():
    code = (
        "import moebench\n"
        "spec = moebench.get_preset('tiny', 'fp32')\n"
        "w = moebench.random_weights(spec)\n"
        "x = moebench.random_inputs(spec, 4)\n"
        "try:\n"
        "    moebench.get('triton_grouped')(x, w)\n"
        "except moebench.MoEInputError as exc:\n"
        "    print('refused:', exc)\n"
        "ok, reason = moebench.get('triton_grouped').available('cpu')\n"
        "print('available:', ok, reason)\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    refused = done.stdout.splitlines()[0]
    assert refused.startswith("refused: x: triton_grouped") and "TRITON_INTERPRET=1" in refused
    assert "available: False" in done.stdout  # the registry (and `moebench list` outside the CLI) agree


def test_cuda_weights_on_a_cpu_machine_is_one_clear_error():
    done = _python(
        "import torch, moebench\n"
        "if not torch.cuda.is_available():\n"
        "    try:\n"
        "        moebench.random_weights(moebench.get_preset('tiny'), device='cuda')\n"
        "    except moebench.MoEInputError as exc:\n"
        "        print(exc)\n"
        "else:\n"
        "    print('device: has CUDA')\n"
    )
    assert done.returncode == 0 and done.stdout.startswith("device: "), done.stderr
