"""The device key tuned configs are filed under: what makes one GPU's best config another's.

CUDA: normalised name, compute capability and SM count, e.g. "nvidia_h100_80gb_hbm3-sm90-132sm"
(the H100 SXM and PCIe differ in name and SM count, so they never share configs).
CPU: "cpu-interpreter" under TRITON_INTERPRET=1 (timings there only exercise the path), else
"cpu-<machine>" for torch-only tunables.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from dataclasses import asdict, dataclass

import torch

from moebench.kernels.common.interpreter import interpreting


@dataclass(frozen=True)
class DeviceInfo:
    key: str
    name: str
    type: str
    capability: str | None = None
    sm_count: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def normalise_name(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia_h100_80gb_hbm3'."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "unknown"


def _as_device(device: torch.device | str) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


@functools.cache
def _cuda_info(index: int) -> DeviceInfo:
    props = torch.cuda.get_device_properties(index)
    capability = f"sm{props.major}{props.minor}"
    key = f"{normalise_name(props.name)}-{capability}-{props.multi_processor_count}sm"
    return DeviceInfo(key, props.name, "cuda", capability, props.multi_processor_count)


def device_info(device: torch.device | str) -> DeviceInfo:
    device = _as_device(device)
    if device.type == "cuda":
        return _cuda_info(device.index)
    if interpreting():
        return DeviceInfo("cpu-interpreter", "CPU (Triton interpreter)", device.type)
    machine = normalise_name(platform.machine() or "unknown")
    return DeviceInfo(f"{device.type}-{machine}", f"{device.type} {platform.machine()}", device.type)


def device_key(device: torch.device | str) -> str:
    return device_info(device).key


@functools.cache
def triton_version() -> str:
    """The installed Triton version ('none' without Triton); part of every config file's key."""
    try:
        import triton
    except ImportError:
        return "none"
    return str(triton.__version__)


def visible_gpus() -> list[str]:
    """Physical ids of the GPUs this process may use (honours CUDA_VISIBLE_DEVICES)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]
