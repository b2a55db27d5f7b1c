"""Every registered implementation that runs here, with the device it runs on: the test device
(DEVICE, as tests/conftest.py's: CUDA on a GPU machine, else the CPU, Triton kernels in the interpreter), or CPU
tensors for the CPU-only ones (ONNX Runtime's CPU provider). Used by the tests that sweep every
implementation (tests/test_ties.py, tests/test_parity_props.py)."""

from __future__ import annotations

import torch

from moebench import registry

# the test device (tests/conftest.py's DEVICE; not imported from there: tests/benchmarks has a conftest too)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def runnable_impls() -> list[tuple[registry.ImplInfo, str]]:
    found = []
    for info in registry.all_impls():
        device = next((d for d in dict.fromkeys((DEVICE, "cpu")) if info.available(d)[0]), None)
        if device is not None:
            found.append((info, device))
    return found
