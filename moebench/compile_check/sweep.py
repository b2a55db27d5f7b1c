"""The static gate's sweep: every launch triton_grouped and block_sparse (with its backward) make
for the given presets and token counts (quantised presets: by the implementations that run them),
recorded on meta tensors, and each distinct compilation among them compiled once for sm_90, in a
small pool of processes.

A launch site names one launch: `<preset>/<impl>/<T>/<kernel>#<n>`, the n-th launch of that kernel
in that layer call (forward, then backward). Many sites compile to one kernel variant (same
kernel, constexprs, options and argument specialisation: moebench.compile_check.ptxas.variant_id).
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass

import torch

from moebench.compile_check.ptxas import CompiledLaunch, compile_launch, variant_id
from moebench.compile_check.record import Launch, record_launches
from moebench.presets import REAL_PRESETS, get_preset
from moebench.registry import get as get_impl

GATE_IMPLS = {"triton_grouped": False, "block_sparse": True}  # implementation -> with its backward
GPU_TOKENS = (1, 16, 128, 1024, 4096, 16384)  # the token counts `moebench bench` runs on a GPU
# quantised experts: each kernel format (fp8 dots; int4, int8 and mxfp4 dequantisation; zero points) on a plain
# real layer, and the two layers served quantised with their options: DeepSeek-V3 in FP8 (a shared expert beside
# the quantised ones) and gpt-oss in MXFP4 (expert biases, clamped SwiGLU)
QUANT_GATE_PRESETS = (
    *(f"mixtral-8x7b+{fmt}" for fmt in ("fp8-block128", "mxfp4", "int4-g128", "int8-g128", "int4-g128-asym")),
    "deepseek-v3+fp8-block128",
    "gpt-oss-20b+mxfp4",
)
GATE_PRESETS = (*REAL_PRESETS, *QUANT_GATE_PRESETS)


@dataclass(frozen=True)
class Site:
    preset: str
    impl: str
    tokens: int
    kernel: str
    index: int  # the index-th launch of `kernel` in this layer call

    def __str__(self) -> str:
        return f"{self.preset}/{self.impl}/{self.tokens}/{self.kernel}#{self.index}"

    @classmethod
    def parse(cls, text: str) -> Site:
        preset, impl, tokens, rest = text.split("/")
        kernel, index = rest.rsplit("#", 1)
        return cls(preset, impl, int(tokens), kernel, int(index))


def record_sites(
    presets, tokens, *, impls=tuple(GATE_IMPLS), kernels=None, config: dict | None = None
) -> dict[Site, Launch]:
    """Every launch site of `impls` at each preset (bf16) x T, with its recorded launch; `kernels`
    (names) keeps only those kernels' sites; `config` (one implementation's) replaces its defaults."""
    sites = {}
    for preset in presets:
        spec = get_preset(preset, torch.bfloat16)
        for num_tokens in tokens:
            for impl in impls:
                if spec.quant is not None and get_impl(impl).spec_unsupported(spec):
                    continue  # the implementation refuses these quantised experts: it launches nothing
                seen: dict[str, int] = {}
                for launch in record_launches(spec, num_tokens, config, impl=impl, backward=GATE_IMPLS[impl]):
                    name = launch.kernel.__name__
                    seen[name] = seen.get(name, -1) + 1
                    if kernels is None or name in kernels:
                        sites[Site(preset, impl, num_tokens, name, seen[name])] = launch
    return sites


_TODO: list[Launch] = []  # what the forked workers compile, by index (set before the pool starts)
_ARCH = [90]


def _compile_one(index: int) -> CompiledLaunch | str:
    """In a worker: the compiled launch, or the error (one line) that stopped its compilation."""
    try:
        return compile_launch(_TODO[index], _ARCH[0])
    except Exception as exc:  # reported per variant by the gate; the other compilations go on
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def compile_sites(
    sites: dict[Site, Launch], arch: int = 90, workers: int | None = None
) -> tuple[dict[str, CompiledLaunch | str], dict[Site, str]]:
    """({variant: compiled launch or its error}, {site: variant}): each variant compiled once, by
    `workers` forked processes (default: one per core; 1 compiles here)."""
    site_variant = {site: variant_id(launch) for site, launch in sites.items()}
    first: dict[str, Launch] = {}
    for site, launch in sites.items():
        first.setdefault(site_variant[site], launch)
    names = list(first)
    _TODO[:], _ARCH[0] = [first[name] for name in names], arch
    workers = min(workers or default_workers(), len(names))
    try:
        if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
            results = [_compile_one(i) for i in range(len(names))]
        else:  # fork: the workers inherit the recorded launches (JIT functions, meta tensors) as they are
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                results = pool.map(_compile_one, range(len(names)), chunksize=1)
    finally:
        _TODO.clear()
    return dict(zip(names, results)), site_variant
