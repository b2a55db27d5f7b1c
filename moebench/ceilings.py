"""The machine's ceilings, measured in the same run as the benchmarks they judge.

Two numbers put a measured MoE time in context:
  * dense GEMM throughput (TFLOP/s): one large square matmul in the benchmark's dtype. On CUDA
    8192^3 (bf16 by default); on the CPU 1024^3, big enough to be compute-bound and quick.
  * memory bandwidth (GB/s): the better of a large device-to-device copy (bytes read + bytes
    written) and a read-only reduction (bytes read): reading weights is a read stream, and a read
    stream can beat a copy's counted bytes. Buffers are far larger than the last-level cache: on CUDA
    1 GiB; on the CPU 64 MiB or 4 x the last-level cache, whichever is larger.
Each is the fastest sample of a timed series (moebench.timing.time_fn, CUDA events without graphs:
one big kernel has no launch gaps to hide), the best the machine did in this run: a measurement
above it is not a result (moebench.bench marks such rows invalid). Their ratio is the ridge point
that decides which cells are timed with a cold cache (moebench.coldcache).
`quick=True` shrinks the sizes for tests; the numbers are then rougher but still measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from moebench.coldcache import llc_bytes
from moebench.spec import dtype_name, parse_dtype
from moebench.timing import cpu_clock, time_fn

# (GEMM edge, memory MiB) per device type and mode
_SIZES = {
    ("cuda", False): (8192, 1024),
    ("cuda", True): (4096, 256),
    ("cpu", False): (1024, 64),
    ("cpu", True): (384, 16),
}


@dataclass(frozen=True)
class Ceilings:
    """Measured peaks of one device: GEMM TFLOP/s per dtype name, memory GB/s."""

    device_type: str
    gemm_tflops: dict[str, float] = field(default_factory=dict)
    mem_gbps: float = float("nan")
    gemm_size: int = 0
    mem_mib: int = 0
    copy_gbps: float = float("nan")  # the two memory measurements mem_gbps is the better of
    read_gbps: float = float("nan")

    def gemm(self, dtype: str | torch.dtype) -> float:
        """The GEMM ceiling for `dtype` (NaN when it was not measured)."""
        name = dtype if isinstance(dtype, str) else dtype_name(dtype)
        return self.gemm_tflops.get(name, float("nan"))

    def ridge(self, dtype: str | torch.dtype) -> float:
        """FLOPs per byte where the memory roof meets the compute roof (NaN when unmeasured)."""
        return self.gemm(dtype) * 1e3 / self.mem_gbps

    def describe(self) -> str:
        gemms = ", ".join(f"{name} GEMM {self.gemm_size}^3: {tf:.3g} TFLOP/s" for name, tf in self.gemm_tflops.items())
        return (
            f"{gemms}; memory {self.mem_mib} MiB: {self.mem_gbps:.4g} GB/s "
            f"(copy {self.copy_gbps:.4g}, read {self.read_gbps:.4g})"
        )


def measure_gemm_tflops(device: str | torch.device, dtype: torch.dtype, size: int, **timing_kwargs) -> float:
    """TFLOP/s of one size^3 matmul in `dtype` on `device` (fastest sample)."""
    device = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    c = torch.empty(size, size, device=device, dtype=dtype)
    timing = time_fn(lambda: torch.matmul(a, b, out=c), device, use_graph=False, **timing_kwargs)
    return 2 * size**3 / (timing.best_ms * 1e-3) / 1e12


def measure_memory_gbps(device: str | torch.device, mib: int, **timing_kwargs) -> tuple[float, float]:
    """(copy GB/s counting bytes read + written, read GB/s of a sum) over a `mib`-MiB fp32 buffer."""
    device = torch.device(device)
    src = torch.ones(mib * (1 << 20) // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    total = torch.empty((), dtype=torch.float32, device=device)
    nbytes = src.numel() * src.element_size()
    copy = time_fn(lambda: dst.copy_(src), device, use_graph=False, **timing_kwargs)
    read = time_fn(lambda: torch.sum(src, dim=0, out=total), device, use_graph=False, **timing_kwargs)
    return 2 * nbytes / (copy.best_ms * 1e-3) / 1e9, nbytes / (read.best_ms * 1e-3) / 1e9


def measure_ceilings(
    device: str | torch.device, dtypes: tuple[str | torch.dtype, ...] = ("bf16",), *, quick: bool = False
) -> Ceilings:
    """GEMM ceiling for each dtype and the memory ceiling of `device` (timed with the clock the
    benchmark uses: on a one-thread CPU run, process CPU time)."""
    device = torch.device(device)
    gemm_size, mem_mib = _SIZES[(device.type, quick)]
    if device.type == "cpu" and not quick:
        mem_mib = max(mem_mib, 4 * llc_bytes("cpu") >> 20)
    reps = {"reps": 5, "warmup": 1} if quick else {"reps": 10, "warmup": 2}
    if device.type == "cpu":
        reps["clock"] = cpu_clock()
    gemm = {}
    for dtype in dict.fromkeys(parse_dtype(d) for d in dtypes):
        gemm[dtype_name(dtype)] = measure_gemm_tflops(device, dtype, gemm_size, **reps)
    copy, read = measure_memory_gbps(device, mem_mib, **reps)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return Ceilings(device.type, gemm, max(copy, read), gemm_size, mem_mib, copy, read)
