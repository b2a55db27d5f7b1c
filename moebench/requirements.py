"""Whether one requirement of an implementation (a CUDA GPU, triton, torch._grouped_mm, an optional package)
holds on this machine for a device, and if not, the reason in words.

The registry asks this for every implementation it lists (ImplInfo.available) or calls; the GPU session asks
it too. It is kept apart from the registry because it reads the machine, not the list: it imports no
implementation and no optional package (find_spec only looks for one).
"""

from __future__ import annotations

import importlib.util

import torch

from moebench.kernels.common.interpreter import interpreting


def _package_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def requirement_missing(requirement: str, device: str) -> str | None:
    """None when `requirement` holds on `device`, else the reason it does not."""
    if requirement == "cuda":
        return None if torch.cuda.is_available() else "needs a CUDA GPU (torch.cuda.is_available() is False)"
    if requirement == "triton":
        if not _package_available("triton"):
            return "needs triton (pip install 'moebench[triton]')"
        if device == "cpu" and not interpreting():
            return (
                "Triton kernels run on CPU tensors only in Triton's interpreter: set TRITON_INTERPRET=1 before "
                "starting Python (e.g. TRITON_INTERPRET=1 python app.py; moebench's commands do it for --device cpu)"
            )
        if device == "cuda" and interpreting():
            return "TRITON_INTERPRET=1 is set: Triton kernels run on CPU tensors only"
        return None
    if requirement == "grouped_mm":
        return None if hasattr(torch, "_grouped_mm") else f"torch {torch.__version__} has no torch._grouped_mm"
    return None if _package_available(requirement) else f"needs the optional package {requirement!r}"
