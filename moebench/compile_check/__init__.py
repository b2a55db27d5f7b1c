"""Compile every Triton kernel launch of an implementation for a GPU target, without a GPU.

The Triton interpreter is lenient (it runs kernels as NumPy code), so it cannot show what only the
compiler rejects or what the GPU pays for (register spills, shared memory, tensor-core use). This
runs the real launchers on `meta` tensors (no memory, real shapes and strides) with every kernel
replaced by a recorder, then compiles each recorded launch ahead of time with Triton's own
argument specialisation for the target (default sm_90, the H100), and reports per kernel what
that compilation says: shared memory, registers and spill bytes (the log of the ptxas run Triton
itself makes), SASS instructions (the cubin), whether wgmma is used, and how many of the global ->
shared async copies are 16 bytes wide (what memory-bound tiles want).

    TRITON_INTERPRET=0 python -m moebench.compile_check --impl triton_grouped --preset qwen3-30b-a3b
    TRITON_INTERPRET=0 python -m moebench.compile_check --impl block_sparse --backward --preset mixtral-8x7b
    TRITON_INTERPRET=0 python -m moebench.compile_check --impl block_sparse --space --tokens 4096

--space compiles every candidate of every tuning space (moebench tune's search space) instead of
the defaults, so a config the H100 would reject, or one that spills, shows before a GPU is lent.
Identical compilations (same kernel, constexprs, options, specialisation) are done once.

record: recording the launches on meta tensors; ptxas: compiling one launch and reading its
figures (cubin: from ptxas's log and the cubin); __main__: the command. The static gate for CI
(every default launch of the real presets against a committed baseline): sweep, baseline, gate
(`python -m moebench.compile_check.gate`).

Needs triton with its NVIDIA backend (ptxas ships in the wheel); no GPU and no CUDA driver.
"""

from moebench.compile_check.ptxas import CompiledLaunch, compile_launch
from moebench.compile_check.record import IMPLS, Launch, record_launches, space_configs

__all__ = ["IMPLS", "CompiledLaunch", "Launch", "compile_launch", "record_launches", "space_configs"]
