"""Every command the README shows, run the way the README writes it.

CPU commands run for real in a scratch folder (a few flags appended keep the inputs small; the
table says which), CUDA-only ones must say in one line that this machine has no GPU (exit code 2),
and the rest name the test or script that runs them. A command added to the README without an entry
here fails `test_every_readme_command_is_covered`.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch
from cli_helpers import run_main

from moebench import registry

README = Path(__file__).resolve().parents[2] / "README.md"
SMALL_VERIFY = ["--preset", "tiny", "--dtype", "fp32", "--tokens", "3", "--cases", "0"]

# command as written -> extra args appended to keep it small (run for real here)
RUN = {
    "moebench list": [],
    "moebench list --presets": [],
    "moebench session --plan-only --device cuda --nominal h200": [],
    "moebench verify --device cpu": SMALL_VERIFY,
    "moebench verify --impl triton_grouped --preset tiny,tiny-odd --dtype fp32,fp16,bf16 --device cpu": [
        "--tokens", "3", "--cases", "0",
    ],
    "moebench verify --impl block_sparse --grad": SMALL_VERIFY,
    "moebench export --preset tiny --format onnx --flavor portable --out out/tiny.onnx": [],
    # qwen3's 1.2 GB of weights exported on a CPU take minutes: the same command on the tiny preset
    "moebench export --preset qwen3-30b-a3b --dtype fp16 --flavor ort-fused --out out/qwen3.onnx": ["--preset", "tiny"],
    "moebench export --bench --preset small-8x2 --tokens 1,16,128 --compare grouped_mm,padded_batch": [
        "--tokens", "1", "--reps", "2",
    ],
    "moebench verify --impl my_moe": SMALL_VERIFY,
    "moebench bench --impl my_moe,naive_loop": ["--preset", "tiny", "--tokens", "1", "--reps", "2", "--quick"],
}  # fmt: skip
BENCH = ("moebench bench", ["--tokens", "1", "--reps", "2", "--warmup", "0", "--quick", "--no-progress"])
REPORT = "moebench report moebench-results/bench-<device>-<date>.csv"
CUDA_ONLY = [
    "moebench verify --device cuda --preset mixtral-8x7b --dtype bf16 --tokens 1,16,128,1024,4096,16384",
    "moebench bench --device cuda --preset mixtral-8x7b,qwen3-30b-a3b --dtype bf16 --tokens 1,16,128,1024,4096,16384",
    "moebench tune --preset mixtral-8x7b --dtype bf16 --device cuda --impl triton_grouped",
]
ELSEWHERE = {
    "moebench tune --preset mixtral-8x7b+int4-g128": (
        "tests/triton_grouped/test_triton_grouped_quant_tuning.py (the tuner on tiny+int4-g128); "
        "tests/test_spec.py (the NAME+FORMAT preset)"
    ),
    "python -m pip install torch==2.13.0 -e .": ".ci/run (a fresh venv)",
    'python -m pip install torch==2.13.0 -e ".[test]"': ".ci/run; tests/test_repo.py checks the line",
    "python -m pytest": "the same tests in one process (.ci/run runs them in xdist workers)",
    "python -m pytest -n auto --dist loadfile": ".ci/run",
    "moebench bench --ep 2 --device cpu --preset small-8x2 --tokens 16,128 --routing zipf --zipf-s 1.2": (
        "tests/ep/test_bench_ep.py (the same options on tiny-shared)"
    ),
    "python -m moebench.ep.table --out results/ep/": "tests/ep/test_table.py (its main on tiny presets)",
    "moebench COMMAND --help": "tests/cli/test_cli_help.py (every command)",
    "TRITON_INTERPRET=0 python -m moebench.compile_check --impl block_sparse --backward --preset mixtral-8x7b "
    "--tokens 1,4096": "tests/test_compile_check.py",
    "TRITON_INTERPRET=0 python -m moebench.compile_check --impl triton_grouped --space --preset gpt-oss-20b "
    "--tokens 1,16,4096": "tests/test_compile_check.py",
    "TRITON_INTERPRET=0 bash scripts/triton36_env.sh python -m moebench.compile_check --impl block_sparse --backward "
    "--preset deepseek-v3 --tokens 1,16,128,1024": "by hand (installs Triton 3.6 into .triton36/)",
    "TRITON_INTERPRET=0 python -m moebench.compile_check.gate": ".ci/kernel_gate; tests/test_kernel_gate_compile.py",
    "TRITON_INTERPRET=0 bash scripts/triton36_env.sh python -m moebench.compile_check.gate": (
        ".ci/kernel_gate; tests/test_kernel_gate_compile.py"
    ),
    "python -m moebench.compile_check.gate record": "by hand (it moves the committed baseline)",
    "DEVICE=cpu bash scripts/gpu_session.sh /tmp/session-out": "tests/test_session.py",
    "bash scripts/gpu_session.sh": "a GPU session",
    'moebench session --out "$OUT"': "scripts/gpu_session.sh",
    "python -m moebench.session.unpack <folder>": "tests/test_session.py",
    "python -m moebench.regression run": ".ci/run; tests/test_regression.py",
    "python -m moebench.regression check --baseline out/ab/baseline-*.json --current out/ab/current-*.json": (
        "tests/test_regression.py"
    ),
    "tox -e test": "tox.ini",
    "tox -e lint": "tox.ini",
    "bash .ci/run": "CI",
}
# code spans that name a command in prose, not a command line to run
MENTIONS = {
    "moebench export --bench",
    "moebench report",
    "moebench tune",
    "moebench session",
    "python -m moebench.compile_check",
    "moebench bench: error: argument --reps: expected an integer >= 1, got '0'",
}


def readme_commands() -> set[str]:
    """Command lines of the README's bash blocks (comments dropped, `a && b` split) and its inline
    code spans that start with moebench, python -m, bash or tox."""
    text = README.read_text()
    commands = set()
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                commands.update(part.strip() for part in line.split(" && "))
    commands.update(re.findall(r"`((?:moebench|python -m|bash|tox) [^`]+)`", text))
    return commands


def test_every_readme_command_is_covered():
    known = set(RUN) | {BENCH[0], REPORT, *CUDA_ONLY, *ELSEWHERE, *MENTIONS}
    assert readme_commands() - known == set()
    assert known - readme_commands() == set()  # no stale entries


@pytest.fixture
def my_moe():
    """The README's "Adding an implementation" example, registered for real."""
    naive = registry.get("naive_loop")
    registry.register("my_moe", kind="grouped-gemm", description="what it is, in one line")(naive.fn)
    yield
    registry.unregister("my_moe")


def _argv(command: str) -> list[str]:
    return shlex.split(command)[1:]


# verify runs the Triton implementations in the interpreter on CPU tensors (not run where it is off)
@pytest.mark.parametrize("command", [pytest.param(c, marks=[pytest.mark.interpreter] * ("verify" in c)) for c in RUN])
def test_readme_cpu_command_runs(command, my_moe, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcome = run_main([*_argv(command), *RUN[command]], capsys)
    assert outcome.rc == 0, (outcome.err, outcome.out[-3000:])
    assert "Traceback" not in outcome.err and "error" not in outcome.err.lower()
    if "--out out/" in command:
        assert (tmp_path / command.split("--out ")[1].split()[0]).is_file()


def test_readme_bench_then_report(capsys, tmp_path, monkeypatch):
    """`moebench bench` writes under ./moebench-results/; the README's report command reads it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MOEBENCH_RESULTS_DIR", raising=False)
    outcome = run_main([*_argv(BENCH[0]), *BENCH[1]], capsys)
    assert outcome.rc == 0, outcome.err
    (csv,) = (tmp_path / "moebench-results").glob("bench-cpu-*.csv")
    assert f"wrote moebench-results/{csv.name}" in outcome.out
    assert max(map(len, outcome.out.splitlines())) <= 120  # the tables fit a 120-column terminal
    assert "shapes (E,k,H,I" in outcome.out
    report = REPORT.replace("moebench-results/bench-<device>-<date>.csv", str(csv.relative_to(tmp_path)))
    outcome = run_main(_argv(report), capsys)
    assert outcome.rc == 0, outcome.err
    assert (tmp_path / "moebench-results" / f"{csv.stem}-report" / "report.md").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moebench-results"]  # nothing else written


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU these run for real (scripts/gpu_session.sh)")
@pytest.mark.parametrize("command", CUDA_ONLY)
def test_readme_cuda_command_says_no_gpu(command, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_main(_argv(command), capsys).assert_one_error_line("--device", "no CUDA GPU")
