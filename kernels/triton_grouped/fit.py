"""Whether a tile config of the `triton_grouped` kernels fits sm_90: shared memory and registers.

Estimates against the one sm_90 resource model (moebench.kernels.common.hopper), plus two bounds
of these kernels checked with ptxas -v for sm_90 (moebench.compile_check). Pure Python.
"""

from __future__ import annotations

from moebench.kernels.common.hopper import ACC_REGS_PER_THREAD, MULTI_TILE_EPILOGUE_REGS, SMEM_LIMIT_BYTES

DECODE_WGMMA_REGS_PER_THREAD = 112  # decode kernels, BLOCK_P >= 64: accumulators + A tile (ptxas -v)
OPERAND_REGS_PER_THREAD = 72  # operand-tile registers per thread off the wgmma path (ptxas -v: 80 can spill)
DEQUANT_STAGE_ELEMS = 48  # quant_gemm, weight-only: dequantised weights per thread per K step x stages
FP8_SCALED_DOT_REGS = 176  # quant_gemm, fp8: accumulators and the scaled dot result, plus operand tiles
FP8_SHARED_SCALED_DOT_REGS = 136  # the same with shared-expert chunks (an unquantised K loop) in the kernel too


def smem_bytes(block_m: int, block_n: int, block_k: int, stages: int, gates: int, elem_bytes: int) -> int:
    """Shared memory of a pipelined K loop: `stages` copies of the A tile and the weight tile(s).
    Conservative: Triton 3.x keeps num_stages - 1 copies (checked with compile_check)."""
    return stages * (block_m * block_k + gates * block_k * block_n) * elem_bytes


def acc_regs(block_m: int, block_n: int, gates: int, num_warps: int) -> float:
    """fp32 accumulator registers per thread."""
    return block_m * block_n * gates / (32 * num_warps)


def operand_regs(block_m: int, block_n: int, block_k: int, gates: int, num_warps: int, elem_bytes: int) -> float:
    """Registers per thread holding one K step's operand tiles. They matter off the wgmma path
    (BLOCK_M < 64, or fp32 on FMA units), where both operands pass through registers."""
    return (block_m * block_k + gates * block_k * block_n) * elem_bytes / 4 / (32 * num_warps)


def smem_fits(block_m: int, cfg: dict, gates: int, elem_bytes: int) -> bool:
    smem = smem_bytes(block_m, cfg["BLOCK_N"], cfg["BLOCK_K"], cfg["num_stages"], gates, elem_bytes)
    return smem <= SMEM_LIMIT_BYTES


def regs_fit(block_m: int, cfg: dict, gates: int, elem_bytes: int) -> bool:
    bn, bk, warps = cfg["BLOCK_N"], cfg["BLOCK_K"], cfg["num_warps"]
    if acc_regs(block_m, bn, gates, warps) > ACC_REGS_PER_THREAD:
        return False
    off_wgmma = block_m < 64 or elem_bytes == 4
    return not off_wgmma or operand_regs(block_m, bn, bk, gates, warps, elem_bytes) <= OPERAND_REGS_PER_THREAD


def decode_wgmma_regs_fit(block_p: int, cfg: dict, gates: int, elem_bytes: int) -> bool:
    """The decode kernels on the wgmma path (BLOCK_P >= 64) keep their gathered A tile in registers
    beside the accumulators, and swiglu's epilogue holds both gate and up tiles. compile_check
    --space (sm_90, bf16; mixtral, gpt-oss and deepseek at T = 1, 16, 128, 4096) compiled 918
    decode launches: 14 with BLOCK_P = 64 spilled 52-476 bytes. This bound, acc (times
    MULTI_TILE_EPILOGUE_REGS when gated) + A <= 112 registers per thread, drops exactly those 14
    and none that compiled clean."""
    if block_p < 64:
        return True
    threads = 32 * cfg["num_warps"]
    acc = acc_regs(block_p, cfg["BLOCK_N"], gates, cfg["num_warps"]) * (MULTI_TILE_EPILOGUE_REGS if gates > 1 else 1.0)
    a_tile = block_p * cfg["BLOCK_K"] * elem_bytes / 4 / threads
    return acc + a_tile <= DECODE_WGMMA_REGS_PER_THREAD


def fits(block_m: int, cfg: dict, gates: int, elem_bytes: int) -> bool:
    """Shared memory within the per-block limit and no register spills expected (limits checked
    against ptxas -v for sm_90 with moebench.compile_check). An estimate: beyond what
    decode_wgmma_regs_fit drops, `compile_check --space` found 7 of those 918 decode launches
    with small spills (4-28 bytes, BLOCK_P <= 32); the tuner times those like any other, so a
    slow one just loses."""
    return smem_fits(block_m, cfg, gates, elem_bytes) and regs_fit(block_m, cfg, gates, elem_bytes)


def quant_regs_fit(block_m: int, cfg: dict, gates: int, fp8: bool, shared: bool = False) -> bool:
    """quant_gemm's registers beyond fits(). Weight-only formats dequantise each [BLOCK_K, BLOCK_N] weight
    tile in registers, and the pipeline keeps about a tile per stage in flight; fp8 holds each tile's dot
    result beside the accumulator to scale it. ptxas for sm_90 (compile_check, bf16, mixtral-8x7b):
    Triton 3.6 (the GPU image's) spilled int4-g128 at 128 dequantised elements per thread x stages
    (244-392 bytes), int4-g128-asym's down GEMM at 64 with BLOCK_M=64 (212 bytes), and ran mxfp4 at 64
    with 242-255 registers; Triton 3.9 spilled int4-g128 from 256 (T=1 space). fp8-block128 (3.9, T=1
    space) spilled at 194 of these registers and not at 161. With shared experts the kernel also holds their
    unquantised K loop (`shared`): deepseek-v3 in fp8 (3.9) spilled 24 bytes at 140 (BLOCK 64x64x32, 4 warps),
    which mixtral-8x7b in fp8 compiles clean."""
    threads = 32 * cfg["num_warps"]
    if fp8:
        acc = 2 * acc_regs(block_m, cfg["BLOCK_N"], gates, cfg["num_warps"])
        operands = operand_regs(block_m, cfg["BLOCK_N"], cfg["BLOCK_K"], gates, cfg["num_warps"], 1)
        return acc + operands <= (FP8_SHARED_SCALED_DOT_REGS if shared else FP8_SCALED_DOT_REGS)
    dequantised = gates * cfg["BLOCK_K"] * cfg["BLOCK_N"] / threads
    return dequantised * max(cfg["num_stages"], 1) <= DEQUANT_STAGE_ELEMS


def shrink_to_fit(block_m: int, cfg: dict, gates: int, elem_bytes: int) -> dict:
    """Make a default config fit. Registers: narrower N tiles (to 32), then shorter K tiles (to
    32). Shared memory: fewer stages (to 2), then shorter K tiles. Last resort: 16-wide, 1 stage."""
    while not fits(block_m, cfg, gates, elem_bytes):
        if not regs_fit(block_m, cfg, gates, elem_bytes) and cfg["BLOCK_N"] > 32:
            cfg["BLOCK_N"] //= 2
        elif not regs_fit(block_m, cfg, gates, elem_bytes) and cfg["BLOCK_K"] > 32:
            cfg["BLOCK_K"] //= 2
        elif smem_fits(block_m, cfg, gates, elem_bytes) and cfg["BLOCK_N"] > 16:
            cfg["BLOCK_N"] //= 2
        elif cfg["num_stages"] > 2:
            cfg["num_stages"] -= 1
        elif cfg["BLOCK_K"] > 32:
            cfg["BLOCK_K"] //= 2
        elif cfg["num_stages"] > 1:
            cfg["num_stages"] -= 1
        else:
            break
    return cfg
