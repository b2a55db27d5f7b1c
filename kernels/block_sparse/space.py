"""Tuning spaces and defaults of the block-sparse MoE kernels (no triton import needed).

Tunable kernels of the implementation "block_sparse" (config key -> what it sets):
  topology  {"block": B}   rows per row block and columns per column block of the hidden
                           activation: a power of two in [16, 256] (default 128; smaller for tiny I)
  sdd       forward gate/up product + activation         (tiles over block rows, block cols, H)
  dsd       forward down product into per-pair rows      (tiles over block rows, H, block cols)
  sdd_bwd   d(hidden) on the nonzero blocks + act. bwd   (tiles over block rows, block cols, H)
  dsd_bwd   dx per pair from d(pre-activation)           (tiles over block rows, H, block cols)
  wgrad     dW1 and dW2 per expert                       (tiles over block cols, H, block rows)
Tile keys: BLOCK_M, BLOCK_N, BLOCK_K (powers of two >= 16), num_warps, num_stages. A tile that
runs along a block dimension is clamped to the block size at launch (so any config is valid
with any block); the spaces below are pruned for the default block of the spec.
"""

from __future__ import annotations

import itertools

import torch

from moebench.kernels.common.hopper import ACC_REGS_PER_THREAD, MULTI_TILE_EPILOGUE_REGS, SMEM_LIMIT_BYTES
from moebench.kernels.common.pow2 import next_pow2
from moebench.spec import MoESpec

DEFAULT_BLOCK = 128
MIN_BLOCK = 16
MAX_BLOCK = 256
# shared memory the K loop may use: the sm_90 limit minus 7 KiB kept for the epilogue (220 KiB)
EPILOGUE_SMEM_HEADROOM_BYTES = 7 * 1024

# kernel -> which tile dimensions run along a block (True) or along a dense dimension (False)
TILE_AXES: dict[str, dict[str, str]] = {
    "sdd": {"BLOCK_M": "block", "BLOCK_N": "block", "BLOCK_K": "hidden"},
    "sdd_bwd": {"BLOCK_M": "block", "BLOCK_N": "block", "BLOCK_K": "hidden"},
    "dsd": {"BLOCK_M": "block", "BLOCK_N": "hidden", "BLOCK_K": "block"},
    "dsd_bwd": {"BLOCK_M": "block", "BLOCK_N": "hidden", "BLOCK_K": "block"},
    "wgrad": {"BLOCK_M": "block", "BLOCK_N": "hidden", "BLOCK_K": "block"},
}
KERNELS: tuple[str, ...] = ("topology", *TILE_AXES)


def default_block(spec: MoESpec, num_tokens: int) -> int:
    """128 (MegaBlocks' choice), but no wider than the intermediate size needs (tiny presets)."""
    return max(MIN_BLOCK, min(DEFAULT_BLOCK, next_pow2(spec.intermediate)))


def topology_default(spec: MoESpec, num_tokens: int) -> dict:
    return {"block": default_block(spec, num_tokens)}


def topology_space(spec: MoESpec, num_tokens: int) -> list[dict]:
    limit = max(default_block(spec, num_tokens), 64)
    return [{"block": b} for b in (32, 64, 128) if b <= limit]


def _operands(kernel: str, spec: MoESpec) -> int:
    """How many [BLOCK_K, BLOCK_N] weight tiles one K step loads (swiglu's forward: gate and up)."""
    return 2 if kernel == "sdd" and spec.gated else 1


def _accumulators(kernel: str, spec: MoESpec) -> int:
    """fp32 [BLOCK_M, BLOCK_N] tiles live at once: swiglu's forward holds gate and up; its backward
    holds d(hidden) and the saved gate and up tiles in the epilogue. fp32 operands count double
    (IEEE fp32 dots run on FMA units with operands in registers: ptxas showed spills otherwise)."""
    tiles = 1
    if spec.gated:
        tiles = {"sdd": 2, "sdd_bwd": 3}.get(kernel, 1)
    return tiles * (2 if spec.dtype == torch.float32 else 1)


def _fits(kernel: str, spec: MoESpec, cfg: dict) -> bool:
    element = torch.finfo(spec.dtype).bits // 8
    bm, bn, bk = cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["BLOCK_K"]
    smem = cfg["num_stages"] * (bm * bk + _operands(kernel, spec) * bk * bn) * element
    tiles = _accumulators(kernel, spec)
    regs = tiles * bm * bn / (32 * cfg["num_warps"])
    if tiles > 1:
        regs *= MULTI_TILE_EPILOGUE_REGS  # the epilogue combines the live tiles
    return smem <= SMEM_LIMIT_BYTES - EPILOGUE_SMEM_HEADROOM_BYTES and regs <= ACC_REGS_PER_THREAD


def tile_space(kernel: str, spec: MoESpec, num_tokens: int) -> list[dict]:
    """Candidate tiles for `kernel`, pruned by the default block, the hidden size, smem and registers."""
    block = default_block(spec, num_tokens)
    hidden_cap = max(MIN_BLOCK, next_pow2(spec.hidden))
    axes = TILE_AXES[kernel]
    out = []
    for bm, bn, bk, warps, stages in itertools.product((64, 128), (64, 128), (32, 64, 128), (4, 8), (2, 3, 4)):
        cfg = {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "num_warps": warps, "num_stages": stages}
        caps = {key: (block if axis == "block" else hidden_cap) for key, axis in axes.items()}
        if any(cfg[key] > max(caps[key], 64) for key in caps):
            continue
        if _fits(kernel, spec, cfg):
            out.append(cfg)
    return out or [tile_default(kernel, spec, num_tokens)]


def tile_default(kernel: str, spec: MoESpec, num_tokens: int) -> dict:
    """A safe config for any spec (checked with ptxas for sm_90: no spills): 16-bit types 128 x 128
    tiles (128 x 64 where swiglu keeps several tiles live), K step 64, 8 warps, 3 stages; fp32
    (IEEE, no tensor cores) 64 x 64 tiles, K step 16, 8 warps."""
    if spec.dtype == torch.float32:
        return {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 16, "num_warps": 8, "num_stages": 3}
    bn = 64 if _accumulators(kernel, spec) > 1 else 128
    return {"BLOCK_M": 128, "BLOCK_N": bn, "BLOCK_K": 64, "num_warps": 8, "num_stages": 3}


def space_fn(kernel: str):
    if kernel == "topology":
        return topology_space
    return lambda spec, num_tokens: tile_space(kernel, spec, num_tokens)


def default_fn(kernel: str):
    if kernel == "topology":
        return topology_default
    return lambda spec, num_tokens: tile_default(kernel, spec, num_tokens)
