"""Where Triton tests run: the interpreter on CPU tensors here, compiled kernels on CUDA tensors on a
GPU machine (moebench.kernels.common.interpreter.kernel_device, the `triton_device` fixture), and
the conftest guard that fails a test launching kernels without that fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from moebench.kernels.common.interpreter import kernel_device

CONFTEST = Path(__file__).with_name("conftest.py")
ALONE = Path(__file__).with_name("alone.py")  # a plugin the conftest names


@pytest.mark.parametrize(
    "cuda, interpret, expected",
    [(True, None, "cuda"), (True, "0", "cuda"), (True, "1", "cpu"), (False, None, "cpu"), (False, "1", "cpu")],
)
def test_kernel_device_is_cuda_exactly_when_a_gpu_runs_compiled_kernels(monkeypatch, cuda, interpret, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    if interpret is None:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    else:
        monkeypatch.setenv("TRITON_INTERPRET", interpret)
    assert kernel_device() == expected


def test_the_fixture_is_that_choice_and_marks_the_test(triton_device, request):
    assert triton_device == kernel_device()
    assert request.node.get_closest_marker("kernels") is not None
    assert request.node.name.endswith("[interpreter-cpu]" if triton_device == "cpu" else "[compiled-cuda]")


INNER = """
import torch
from moebench.impls.common.combine import combine


def _launch(device):
    rows = torch.ones(4, 8, device=device)
    out = torch.empty(2, 8, device=device)
    combine(rows, None, out, top_k=2)
    assert torch.equal(out, torch.full((2, 8), 2.0, device=device))


def test_without_the_fixture():
    _launch("cpu")


def test_with_the_fixture(triton_device):
    _launch(triton_device)


def test_no_kernel():
    assert True
"""


@pytest.mark.interpreter  # the guard watches the interpreter's launches (CI's machines have no GPU)
def test_a_kernel_launched_without_the_fixture_fails(pytester):
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(alone=ALONE.read_text())
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*at teardown of test_without_the_fixture*", "*without the `triton_device` fixture*"])
    kernels_only = pytester.runpytest_subprocess("-p", "no:randomly", "-m", "kernels", "--shard=1/1")
    kernels_only.assert_outcomes(passed=1, deselected=2)


def test_shards_split_what_is_selected(pytester):
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(alone=ALONE.read_text())
    pytester.makepyfile(test_many="\n".join(f"def test_{i}():\n    pass\n" for i in range(5)))
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-v", "-k", "not test_0", "--shard=2/2")
    result.assert_outcomes(passed=2, deselected=3)  # -k leaves 1..4; the second of two shards: 2 and 4
    assert {line.split("::")[1].split()[0] for line in result.outlines if "PASSED" in line} == {"test_2", "test_4"}
