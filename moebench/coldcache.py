"""Cold-cache timing: which cells need it, the last-level cache's size, and the flush between samples.

A weight-bound cell (decode, small T) reads each expert's weights once per call. Timed back to back,
the weights of the previous call are still in the last-level cache (L3 on a CPU, L2 on a GPU: 50 MB
on H100/H200) whenever they fit, and the measured "weight GB/s" exceeds what memory can deliver.
So a weight-bound cell is timed cold: before every sample (untimed) a buffer of FLUSH_FACTOR x the
last-level cache is read, which evicts the weights; the call then reads them from memory, as it does
in a model where other layers ran in between. triton.testing.do_bench flushes the same way, but by
writing its buffer; a read leaves the cache holding clean lines, so the timed call does not also pay
for writing the flush's dirty lines back to memory.

The rule (`is_weight_bound`): a cell is weight-bound when its arithmetic intensity, FLOPs per byte
of the expert weights it reads, is below the machine's ridge point, the dense-GEMM ceiling divided
by the memory-bandwidth ceiling, both measured in the same run (moebench.ceilings). Above the ridge
the cell is compute-bound: the weights are reused across many tokens and a warm cache is what a
model sees, so it is timed warm. Each row records which (`cache` column: cold or warm).
"""

from __future__ import annotations

import functools
import math
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from moebench.routing import route
from moebench.spec import MoESpec
from moebench.weights import MoEWeights

if TYPE_CHECKING:  # moebench.ceilings imports this module (llc_bytes)
    from moebench.ceilings import Ceilings

FLUSH_FACTOR = 2  # the flush buffer is this many times the last-level cache
DEFAULT_LLC_BYTES = 64 << 20  # when the size cannot be read: larger than most CPUs' L3 slice and GPUs' L2
CACHE_MODES = ("auto", "cold", "warm")  # auto: cold for weight-bound cells, warm otherwise

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?\s*$", re.I)


def parse_size(text: str) -> int | None:
    """'32768K', '32 MiB', '1024' -> bytes (None when unreadable)."""
    match = _SIZE.match(text.split("(")[0])
    if not match:
        return None
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[match.group(2).upper()]
    return int(float(match.group(1)) * scale)


def _cpu_llc_from_sys(root: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int | None:
    best: tuple[int, int] | None = None  # (level, bytes)
    for index in sorted(root.glob("index*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            size = parse_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind in ("Unified", "Data") and size and (best is None or level > best[0]):
            best = (level, size)
    return best[1] if best else None


def _cpu_llc_from_lscpu() -> int | None:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for name in ("L3 cache", "L2 cache"):
        for line in text.splitlines():
            if line.startswith(name + ":"):
                return parse_size(line.split(":", 1)[1])
    return None


@functools.cache
def llc_bytes(device_type: str, index: int = 0) -> int:
    """The last-level cache of `device_type`: a GPU's L2, a CPU's largest data/unified cache (one
    instance, from /sys, else lscpu), else DEFAULT_LLC_BYTES."""
    if device_type == "cuda":
        size = getattr(torch.cuda.get_device_properties(index), "L2_cache_size", 0)
        return int(size) or DEFAULT_LLC_BYTES
    return _cpu_llc_from_sys() or _cpu_llc_from_lscpu() or DEFAULT_LLC_BYTES


class Flusher:
    """Evicts the last-level cache: `flush()` reads every line of a buffer FLUSH_FACTOR times its
    size (an fp32 sum into `total`, allocated once: the flush allocates nothing; an int32 sum would
    widen to int64 and run 20x slower on a CPU)."""

    def __init__(self, device: str | torch.device):
        device = torch.device(device)
        self.bytes = FLUSH_FACTOR * llc_bytes(device.type, device.index or 0)
        self.buffer = torch.ones(self.bytes // 4, dtype=torch.float32, device=device)
        self.total = torch.zeros((), dtype=torch.float32, device=device)

    def flush(self) -> None:
        torch.sum(self.buffer, dim=0, out=self.total)


def arithmetic_intensity(spec: MoESpec, num_tokens: int, n_active: int) -> float:
    """FLOPs per byte of the expert weights a call reads (the roofline's x axis)."""
    weight_bytes = spec.expert_weight_bytes(n_active)
    return spec.flops(num_tokens) / weight_bytes if weight_bytes else float("inf")


def is_weight_bound(spec: MoESpec, num_tokens: int, n_active: int, ridge_flops_per_byte: float) -> bool:
    """Below the ridge point (or when it is unknown): time it cold."""
    intensity = arithmetic_intensity(spec, num_tokens, n_active)
    return not intensity >= ridge_flops_per_byte  # NaN ridge: cold, the safe side


@functools.lru_cache(maxsize=1)
def _flusher(device: str) -> Flusher:
    return Flusher(device)


def cache_state(
    mode: str, spec: MoESpec, num_tokens: int, n_active: int, ceilings: Ceilings | None, device: torch.device
) -> tuple[str, dict]:
    """('cold', time_fn kwargs that flush the last-level cache before each sample) or ('warm', {}): the
    benchmark's rule, which the tuner follows too (a config chosen on warm weights may not be the cold winner)."""
    ridge = ceilings.ridge(spec.dtype) if ceilings is not None else math.nan
    if mode == "cold" or (mode == "auto" and is_weight_bound(spec, num_tokens, n_active, ridge)):
        return "cold", {"before_each": _flusher(str(device)).flush}
    return "warm", {}


def count_active_experts(x: torch.Tensor, weights: MoEWeights) -> int:
    """Distinct experts the routing of `x` selects (the experts whose weights must be read)."""
    if x.shape[0] == 0:
        return 0
    _, topk_ids = route(x, weights)
    return int(torch.unique(topk_ids).numel())
