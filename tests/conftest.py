"""Test setup: without a GPU, Triton kernels run in the interpreter on CPU tensors.

TRITON_INTERPRET must be set before any @triton.jit function is created, i.e. before
moebench.kernels is imported; conftest runs first.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from moebench.kernels.common.interpreter import interpreting  # noqa: E402  (imports no triton)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Triton kernels on CPU tensors need the interpreter: on a GPU machine (compiled kernels) the tests
# marked `interpreter`, which run them on CPU tensors on purpose, are skipped with that reason.
INTERPRETING = interpreting()


@pytest.fixture
def device() -> str:
    return DEVICE


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_compiled = pytest.mark.skip(
        reason="runs Triton kernels on CPU tensors: interpreter only (set TRITON_INTERPRET=1 to run it here)"
    )
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "interpreter" in item.keywords and not INTERPRETING:
            item.add_marker(skip_compiled)
