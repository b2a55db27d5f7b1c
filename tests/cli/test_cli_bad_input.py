"""Bad input, as a new user types it: one line on stderr naming the argument, exit code 2 (usage),
no traceback; and nothing is run or written first."""

from __future__ import annotations

import pytest
import torch
from cli_helpers import results_csv, run_main, run_process

CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="checks what a machine without CUDA says")

# (argv, the words the one error line must contain)
BAD_ARGS = [
    (["list", "--device", "gpu"], ["--device", "gpu"]),
    (["list", "--device", "all"], ["--device"]),
    (["bench", "--device", "both"], ["--device", "both"]),
    (["verify", "--device", "gpu"], ["--device"]),
    (["verify", "--dtype", "fp64"], ["--dtype", "fp64"]),
    (["bench", "--dtype", "fp64"], ["--dtype", "fp64"]),
    (["bench", "--dtype", "int8"], ["--dtype"]),
    (["bench", "--dtype", ","], ["--dtype"]),
    (["verify", "--preset", "mixtral"], ["--preset", "mixtral"]),
    (["bench", "--preset", "tiny,nope"], ["--preset", "nope"]),
    (["verify", "--impl", "triton"], ["--impl", "triton"]),
    (["bench", "--impl", "naive_loop,nope"], ["--impl", "nope"]),
    (["bench", "--baseline", "foo"], ["--baseline", "foo"]),
    (["bench", "--tokens", "1,x"], ["--tokens"]),
    (["bench", "--tokens", "-1"], ["--tokens"]),
    (["bench", "--tokens", "0"], ["--tokens"]),
    (["verify", "--tokens", "1.5"], ["--tokens"]),
    (["bench", "--reps", "0"], ["--reps"]),
    (["bench", "--reps", "many"], ["--reps"]),
    (["bench", "--warmup", "-1"], ["--warmup"]),
    (["bench", "--threads", "0"], ["--threads"]),
    (["bench", "--cache", "hot"], ["--cache", "hot"]),
    (["verify", "--cases", "-1"], ["--cases"]),
    (["verify", "--shape", "8,2,x,4"], ["--shape"]),
    (["verify", "--shape", "8,2,16"], ["--shape"]),
    (["verify", "--shape", "2,3,16,16"], ["--shape"]),  # k > E
    (["tune"], ["--preset"]),
    (["tune", "--preset", "tiny", "--max-configs", "0"], ["--max-configs"]),
    (["tune", "--preset", "tiny", "--budget", "-1"], ["--budget"]),
    (["tune", "--preset", "tiny", "--compile-workers", "-2"], ["--compile-workers"]),
    (["tune", "--preset", "tiny+int3"], ["preset 'tiny+int3'", "quant"]),
    (["tune", "--preset", "tinyy+int4-g128"], ["--preset", "tinyy+int4-g128"]),
    (["export", "--opset", "11"], ["--opset"]),
    (["export", "--flavor", "fast"], ["--flavor"]),
    (["export", "--preset", "tiny,tiny-odd"], ["--preset"]),
    (["export", "--impl", "naive_loop,grouped_mm"], ["--impl"]),
    (["export", "--min-tokens", "64", "--max-tokens", "8"], ["--min-tokens"]),
    (["export", "--format", "trt", "--device", "cpu"], ["--format trt", "CUDA"]),
    (["frobnicate"], ["frobnicate"]),
    (["bench", "--bogus"], ["--bogus"]),
]


@pytest.mark.parametrize("argv,needles", BAD_ARGS, ids=[" ".join(a) for a, _ in BAD_ARGS])
def test_bad_argument_is_one_line_naming_it(argv, needles, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_main(argv, capsys).assert_one_error_line(*needles)
    assert not any(tmp_path.iterdir())  # nothing written


@CPU_ONLY
@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "--device", "cuda"],
        ["verify", "--device", "cuda", "--preset", "mixtral-8x7b"],
        ["tune", "--preset", "tiny", "--device", "cuda"],
        ["export", "--format", "trt", "--preset", "tiny"],
    ],
    ids=lambda a: " ".join(a),
)
def test_cuda_asked_for_on_a_cpu_machine(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = run_main(argv, capsys).assert_one_error_line()
    assert "CUDA" in line or "cuda" in line
    assert "pip install tensorrt" not in line  # TensorRT needs a GPU first, not a package


@pytest.mark.parametrize(
    "pin,needles",
    [
        ('{"gate_upp": {"BLOCK_M": 64}}', ["MOEBENCH_PIN_CONFIG", "gate_upp"]),
        ('{"gate_up": {"BLOCK_M": 64}', ["MOEBENCH_PIN_CONFIG", "JSON"]),
        ('["gate_up"]', ["MOEBENCH_PIN_CONFIG"]),
        ('{"gate_up": 64}', ["MOEBENCH_PIN_CONFIG"]),
    ],
)
@pytest.mark.parametrize("command", ["verify", "bench", "tune", "export"])
def test_bad_pin_config_is_refused_before_any_run(pin, needles, command, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MOEBENCH_PIN_CONFIG", pin)
    argv = [command, "--device", "cpu", "--preset", "tiny", "--dtype", "fp32"]
    argv += ["--bench"] if command == "export" else []
    outcome = run_main(argv, capsys)
    outcome.assert_one_error_line(*needles)
    assert "FAIL" not in outcome.out  # not reported as parity failures


def test_report_refuses_a_csv_that_is_not_results(capsys, tmp_path):
    junk = tmp_path / "junk.csv"
    junk.write_text("a,b\n1,2\n")
    outcome = run_main(["report", str(junk), "--out", str(tmp_path / "rep")], capsys)
    outcome.assert_one_error_line("csv", "junk.csv", "not a moebench results file")
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("content", ["", "impl,preset\n", "\x00\x01binary"])
def test_report_refuses_empty_and_other_files(content, capsys, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(content)
    run_main(["report", str(path), "--out", str(tmp_path / "rep")], capsys).assert_one_error_line("csv")


def test_report_refuses_another_schema_version(capsys, tmp_path):
    path = results_csv(tmp_path / "r.csv")
    path.write_text(path.read_text().replace(",2\n", ",1\n"))
    run_main(["report", str(path)], capsys).assert_one_error_line("schema_version")


def test_report_refuses_missing_file_and_unknown_baseline(capsys, tmp_path):
    run_main(["report", str(tmp_path / "nope.csv")], capsys).assert_one_error_line("csv", "nope.csv")
    path = results_csv(tmp_path / "r.csv")
    run_main(["report", str(path), "--baseline", "nope"], capsys).assert_one_error_line("--baseline", "nope")


def test_report_refuses_to_merge_different_runs_unless_asked(capsys, tmp_path):
    one = results_csv(tmp_path / "one.csv", threads=1)
    two = results_csv(tmp_path / "two.csv", threads=2)
    other = results_csv(tmp_path / "other.csv", device="cpu: another (64 cores)")
    line = run_main(["report", str(one), str(two)], capsys).assert_one_error_line("threads", "--allow-mixed")
    assert "one.csv" in line and "two.csv" in line
    run_main(["report", str(one), str(other)], capsys).assert_one_error_line("device_name")
    outcome = run_main(["report", str(one), str(two), "--allow-mixed", "--out", str(tmp_path / "rep")], capsys)
    assert outcome.rc == 0, outcome.err
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "[threads=1]" in report and "[threads=2]" in report  # side by side, never under one header


def test_report_merges_runs_that_agree(capsys, tmp_path):
    one = results_csv(tmp_path / "one.csv", impls=("naive_loop",))
    two = results_csv(tmp_path / "two.csv", impls=("naive_loop", "padded_batch"))
    assert run_main(["report", str(one), str(two), "--out", str(tmp_path / "rep")], capsys).rc == 0


def test_entry_point_bad_input_is_one_line():
    """The same through the real entry point: no usage block, no traceback."""
    run_process(["bench", "--reps", "0"]).assert_one_error_line("--reps")
    run_process(["report", "missing.csv"]).assert_one_error_line("csv")
