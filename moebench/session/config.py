"""What a session runs: the one place that lists its presets, token counts and implementations.

`for_device("cuda")` is the GPU session of issue 15 (its grid, in priority order, lives in
moebench.session.plan); `for_device("cpu")` is the same flow on tiny presets through the Triton
interpreter, to smoke-test it anywhere. Adding a preset to a step is one line here; presets added
to moebench.presets.REAL_PRESETS join the bench grid by themselves. Extra, low-priority cells
(quantised experts, new implementations) are one `Extra(...)` line in EXTRAS.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from moebench.presets import REAL_PRESETS

# the presets verified first (the largest layers and the most experts), then the rest
FIRST_VERIFY = ("mixtral-8x7b", "qwen3-30b-a3b", "deepseek-v3")
TUNE_PRESETS = ("qwen3-30b-a3b", "mixtral-8x7b")


@dataclass(frozen=True)
class Extra:
    """Low-priority bench cells run when time is left: `impls` on `presets` x `tokens` (experts quantised to
    `quant`, a moebench.quant format, when set)."""

    name: str
    impls: tuple[str, ...]
    presets: tuple[str, ...]
    tokens: tuple[int, ...]
    dtype: str = "bf16"
    quant: str | None = None


# Other issues add their cells here, one line each. Quantised experts (issue 17): each format beside the bf16
# rows of the same preset (qwen3-30b-a3b), grouped_mm the dequantise-up-front baseline; and gpt-oss-20b in
# MXFP4, the form its experts ship in (biases and the clamped SwiGLU in the quantised kernels' epilogues).
EXTRAS: tuple[Extra, ...] = (
    Extra("fp8 experts", ("triton_grouped", "grouped_mm"), ("qwen3-30b-a3b",), (16, 1024), quant="fp8-block128"),
    Extra("mxfp4 experts", ("triton_grouped",), ("qwen3-30b-a3b", "gpt-oss-20b"), (16, 1024), quant="mxfp4"),
    Extra("int4 experts", ("triton_grouped", "grouped_mm"), ("qwen3-30b-a3b",), (16, 1024), quant="int4-g128"),
)


@dataclass(frozen=True)
class SessionConfig:
    device: str
    deadline_s: float = 540.0
    dtype: str = "bf16"
    seed: int | None = None
    # 1. environment and ceilings; 2. tests
    tests_expr: str = "gpu or kernels"  # pytest -m expression (`kernels`: tests taking triton_device)
    # 3. verify
    verify_impls: tuple[str, ...] = ("triton_grouped", "block_sparse", "grouped_mm")
    verify_presets: tuple[str, ...] = FIRST_VERIFY
    verify_tokens: tuple[int, ...] = (1, 16, 1024, 16384)
    grad_case: tuple[str, str, int] = ("block_sparse", "qwen3-30b-a3b", 1024)  # impl, preset, T
    # 4. bench (CUDA graphs; naive_loop only where it takes seconds)
    bench_impls: tuple[str, ...] = ("triton_grouped", "block_sparse", "grouped_mm", "vllm_fused")
    bench_presets: tuple[str, ...] = REAL_PRESETS
    bench_tokens: tuple[int, ...] = (1, 16, 128, 1024, 4096, 16384)
    baseline: str = "naive_loop"
    baseline_max_s: float = 2.0  # time the baseline on a cell only when its estimated row takes under this
    # 5. tuned vs default
    tune_impls: tuple[str, ...] = ("triton_grouped",)
    tune_presets: tuple[str, ...] = TUNE_PRESETS
    tune_buckets: tuple[int, ...] = (16, 1024, 16384)
    tune_max_configs: int = 8
    # 6. anything left
    later_verify_presets: tuple[str, ...] = tuple(p for p in REAL_PRESETS if p not in FIRST_VERIFY)
    later_tune_impls: tuple[str, ...] = ("block_sparse",)
    eager_rows: bool = True
    extras: tuple[Extra, ...] = field(default_factory=lambda: EXTRAS)
    quick_timing: bool = False  # fewer timing repetitions (CPU smoke runs)
    quant: str | None = None  # experts' weight format of the bench cells (set per Extra)

    def with_deadline(self, deadline_s: float | None) -> SessionConfig:
        return self if deadline_s is None else replace(self, deadline_s=deadline_s)


def for_device(device: str) -> SessionConfig:
    """The default session on `device`: the full grid on CUDA, tiny presets on the CPU."""
    if device == "cuda":
        return SessionConfig("cuda")
    return SessionConfig(
        "cpu",
        dtype="fp32",
        tests_expr="gpu",  # the kernel tests already run in CI on the CPU; here only the step's wiring
        verify_presets=("tiny",),
        verify_tokens=(1, 37),
        grad_case=("block_sparse", "tiny", 16),
        bench_impls=("triton_grouped", "block_sparse", "grouped_mm"),
        bench_presets=("tiny",),
        bench_tokens=(1, 16),
        baseline_max_s=5.0,
        tune_presets=("tiny",),
        tune_buckets=(1,),
        tune_max_configs=2,
        later_verify_presets=("tiny-odd",),
        later_tune_impls=(),
        eager_rows=False,  # the CPU has no CUDA graphs: its rows are eager already
        extras=(),
        quick_timing=True,
    )
