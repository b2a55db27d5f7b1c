"""The machine's ceilings, measured in the same run as the benchmarks they judge.

Two numbers put a measured MoE time in context:
  * dense GEMM throughput (TFLOP/s): one large square matmul in the benchmark's dtype. On CUDA
    8192^3 (bf16 by default); on the CPU 1024^3, big enough to be compute-bound and quick.
  * copy bandwidth (GB/s): a large device-to-device copy, counted as bytes read + bytes written.
    On CUDA 1 GiB per buffer; on the CPU 64 MiB, larger than any last-level cache.
Both use moebench.timing.time_fn (CUDA events, no graph: one big kernel has no launch gaps to hide).
`quick=True` shrinks the CPU sizes for tests; the numbers are then rougher but still measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from moebench.spec import dtype_name, parse_dtype
from moebench.timing import time_fn

# (GEMM edge, copy MiB) per device type and mode
_SIZES = {
    ("cuda", False): (8192, 1024),
    ("cuda", True): (4096, 256),
    ("cpu", False): (1024, 64),
    ("cpu", True): (384, 16),
}


@dataclass(frozen=True)
class Ceilings:
    """Measured peaks of one device: GEMM TFLOP/s per dtype name, copy GB/s (read + write)."""

    device_type: str
    gemm_tflops: dict[str, float] = field(default_factory=dict)
    copy_gbps: float = float("nan")
    gemm_size: int = 0
    copy_mib: int = 0

    def gemm(self, dtype: str | torch.dtype) -> float:
        """The GEMM ceiling for `dtype` (NaN when it was not measured)."""
        name = dtype if isinstance(dtype, str) else dtype_name(dtype)
        return self.gemm_tflops.get(name, float("nan"))

    def describe(self) -> str:
        gemms = ", ".join(f"{name} GEMM {self.gemm_size}^3: {tf:.3g} TFLOP/s" for name, tf in self.gemm_tflops.items())
        return f"{gemms}; copy {self.copy_mib} MiB: {self.copy_gbps:.4g} GB/s (read + write)"


def measure_gemm_tflops(device: str | torch.device, dtype: torch.dtype, size: int, **timing_kwargs) -> float:
    """TFLOP/s of one size^3 matmul in `dtype` on `device` (median time)."""
    device = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    c = torch.empty(size, size, device=device, dtype=dtype)
    timing = time_fn(lambda: torch.matmul(a, b, out=c), device, use_graph=False, **timing_kwargs)
    return 2 * size**3 / (timing.median_ms * 1e-3) / 1e12


def measure_copy_gbps(device: str | torch.device, mib: int, **timing_kwargs) -> float:
    """GB/s of a `mib`-MiB device-to-device copy, counting bytes read plus bytes written."""
    device = torch.device(device)
    src = torch.ones(mib * (1 << 20) // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    timing = time_fn(lambda: dst.copy_(src), device, use_graph=False, **timing_kwargs)
    return 2 * src.numel() * src.element_size() / (timing.median_ms * 1e-3) / 1e9


def measure_ceilings(
    device: str | torch.device, dtypes: tuple[str | torch.dtype, ...] = ("bf16",), *, quick: bool = False
) -> Ceilings:
    """GEMM ceiling for each dtype and the copy ceiling of `device`."""
    device = torch.device(device)
    gemm_size, copy_mib = _SIZES[(device.type, quick)]
    reps = {"reps": 5, "warmup": 1} if quick else {"reps": 10, "warmup": 2}
    gemm = {}
    for dtype in dict.fromkeys(parse_dtype(d) for d in dtypes):
        gemm[dtype_name(dtype)] = measure_gemm_tflops(device, dtype, gemm_size, **reps)
    copy = measure_copy_gbps(device, copy_mib, **reps)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return Ceilings(device.type, gemm, copy, gemm_size, copy_mib)
