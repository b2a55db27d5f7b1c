"""Tuning spaces and default configs of the `triton_grouped` kernels, as functions of (spec, T).

Kernels (names used in `config={kernel: {...}}` and by moebench.tuning):
  path            {"path": "grouped" | "decode"}: which pipeline runs (see `path_default`).
  gate_up         grouped GEMM 1: BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, num_warps, num_stages.
                  Its BLOCK_M is also the block the routing alignment pads every expert to.
  down            grouped GEMM 2: BLOCK_N, BLOCK_K, GROUP_M, num_warps, num_stages, and optionally
                  BLOCK_M, which must divide gate_up's BLOCK_M (default: equal to it). The space
                  leaves BLOCK_M out so any tuned down config fits any tuned gate_up config.
  decode_gate_up  decode GEMM 1: BLOCK_P (pairs per pass), BLOCK_N, BLOCK_K, num_warps, num_stages.
  decode_down     decode GEMM 2: same keys.

Pure Python (no triton import): the registry imports it to register the tunables.
Pruning: tiles no larger than the problem needs, and what fits sm_90 (moebench.kernels.triton_grouped.fit:
the one resource model, moebench.kernels.common.hopper, plus bounds calibrated with ptxas).
"""

from __future__ import annotations

import itertools
import math

from moebench.kernels.common.hopper import SM_COUNT
from moebench.kernels.common.pow2 import next_pow2
from moebench.kernels.triton_grouped.fit import decode_wgmma_regs_fit, fits, shrink_to_fit
from moebench.spec import MoESpec

DECODE_MAX_PAIRS = 32  # default rule: the decode path runs when T * k <= this
TARGET_PROGRAMS = 4 * SM_COUNT  # decode: enough programs for 4 per SM
MIN_SLAB_BYTES = 64 * 1024  # decode: weight bytes one program streams at least

GATE_UP_KEYS = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M", "num_warps", "num_stages")
DOWN_KEYS = ("BLOCK_N", "BLOCK_K", "GROUP_M", "num_warps", "num_stages")
DOWN_OPTIONAL_KEYS = ("BLOCK_M",)
DECODE_KEYS = ("BLOCK_P", "BLOCK_N", "BLOCK_K", "num_warps", "num_stages")
PATHS = ("grouped", "decode")


def _clamp_pow2(value: int, limit: int, floor: int = 16) -> int:
    """value, but no larger than the power of two covering `limit`, and at least `floor`."""
    return max(floor, min(value, next_pow2(limit)))


def _elem_bytes(spec: MoESpec) -> int:
    return 4 if spec.dtype.itemsize >= 4 else 2


def _gates(spec: MoESpec) -> int:
    return 2 if spec.gated else 1


def avg_rows_per_expert(spec: MoESpec, num_tokens: int) -> float:
    return num_tokens * spec.top_k / spec.num_experts


# -- path ---------------------------------------------------------------------------------------
def path_default(spec: MoESpec, num_tokens: int) -> dict:
    """decode when T*k <= DECODE_MAX_PAIRS (weights stream once, no alignment launches; the
    masked rows of its BLOCK_P-row products cost little there), else grouped."""
    return {"path": "decode" if num_tokens * spec.top_k <= DECODE_MAX_PAIRS else "grouped"}


def path_space(spec: MoESpec, num_tokens: int) -> list[dict]:
    space = [{"path": "grouped"}]
    if num_tokens * spec.top_k <= 8 * DECODE_MAX_PAIRS:
        space.append({"path": "decode"})
    return space


# -- grouped GEMM 1 (gate/up) -------------------------------------------------------------------
def align_block_m(spec: MoESpec, num_tokens: int) -> int:
    """Default BLOCK_M from the average rows per expert: small for few tokens (less padding)."""
    rows = avg_rows_per_expert(spec, num_tokens)
    if rows <= 16:
        return 16
    if rows <= 32:
        return 32
    if rows <= 96:
        return 64
    return 128


def gate_up_default(spec: MoESpec, num_tokens: int) -> dict:
    gates, elem = _gates(spec), _elem_bytes(spec)
    bm = align_block_m(spec, num_tokens)
    n, k = spec.intermediate, spec.hidden
    if elem == 4:  # fp32 IEEE runs on FMA units: modest tiles
        bm = min(bm, 64)
        cfg = {"BLOCK_M": bm, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8 if bm >= 32 else 1}
        cfg.update(num_warps=4, num_stages=3)
    elif bm <= 32:  # weight streaming: long K tiles, deep pipeline
        cfg = {"BLOCK_M": bm, "BLOCK_N": 64, "BLOCK_K": 128, "GROUP_M": 1, "num_warps": 4, "num_stages": 4}
    elif bm == 64:
        cfg = {"BLOCK_M": 64, "BLOCK_N": 64 if gates == 2 else 128, "BLOCK_K": 64, "GROUP_M": 8}
        cfg.update(num_warps=4, num_stages=4)
    else:
        cfg = {"BLOCK_M": 128, "BLOCK_N": 64 if gates == 2 else 128, "BLOCK_K": 64, "GROUP_M": 8}
        cfg.update(num_warps=8, num_stages=3)
    cfg["BLOCK_N"] = _clamp_pow2(cfg["BLOCK_N"], n)
    cfg["BLOCK_K"] = _clamp_pow2(cfg["BLOCK_K"], k)
    return shrink_to_fit(bm, cfg, gates, elem)


def _grouped_candidates(block_ms, n: int, k: int, gates: int, elem: int, *, tune_block_m: bool) -> list[dict]:
    """Candidates of a grouped GEMM with N = n, K = k for each BLOCK_M in block_ms, pruned by fits();
    tune_block_m: BLOCK_M is a key of the config (gate_up), else inherited (down)."""
    block_ks = (32, 64) if elem == 4 else (64, 128)
    out, seen = [], set()
    for bm, bn, bk, group_m, warps, stages in itertools.product(
        block_ms, (32, 64, 128, 256), block_ks, (1, 8), (4, 8), (3, 4)
    ):
        if tune_block_m and group_m > 1 and bm < 32:
            continue
        cfg = {"BLOCK_M": bm} if tune_block_m else {}
        cfg.update(
            BLOCK_N=_clamp_pow2(bn, n), BLOCK_K=_clamp_pow2(bk, k), GROUP_M=group_m, num_warps=warps, num_stages=stages
        )
        key = tuple(cfg.values())
        if key in seen or not fits(bm, cfg, gates, elem):
            continue
        if warps == 8 and bm * cfg["BLOCK_N"] * gates < 64 * 128:  # too small a tile for 8 warps
            continue
        seen.add(key)
        out.append(cfg)
    return out


def tuned_block_ms(spec: MoESpec, num_tokens: int) -> list[int]:
    """BLOCK_M candidates: up to twice the average rows per expert (more would be mostly padding)."""
    max_bm = max(16, 2 * next_pow2(math.ceil(avg_rows_per_expert(spec, num_tokens))))
    return [bm for bm in (16, 32, 64, 128) if bm <= max_bm]


def gate_up_space(spec: MoESpec, num_tokens: int) -> list[dict]:
    block_ms = tuned_block_ms(spec, num_tokens)
    out = _grouped_candidates(
        block_ms, spec.intermediate, spec.hidden, _gates(spec), _elem_bytes(spec), tune_block_m=True
    )
    return out or [gate_up_default(spec, num_tokens)]


# -- grouped GEMM 2 (down) ----------------------------------------------------------------------
def down_default(spec: MoESpec, num_tokens: int) -> dict:
    elem = _elem_bytes(spec)
    bm = gate_up_default(spec, num_tokens)["BLOCK_M"]
    n, k = spec.hidden, spec.intermediate
    if elem == 4:
        cfg = {"BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8, "num_warps": 4, "num_stages": 3}
    elif bm <= 32:
        cfg = {"BLOCK_N": 64, "BLOCK_K": 128, "GROUP_M": 1, "num_warps": 4, "num_stages": 4}
    elif bm == 64:
        cfg = {"BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8, "num_warps": 4, "num_stages": 4}
    else:
        cfg = {"BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8, "num_warps": 8, "num_stages": 3}
    cfg["BLOCK_N"] = _clamp_pow2(cfg["BLOCK_N"], n)
    cfg["BLOCK_K"] = _clamp_pow2(cfg["BLOCK_K"], k)
    return shrink_to_fit(bm, cfg, 1, elem)


def down_space(spec: MoESpec, num_tokens: int) -> list[dict]:
    """Pruned for the default gate_up BLOCK_M (down inherits the BLOCK_M pairs are padded to)."""
    bm = gate_up_default(spec, num_tokens)["BLOCK_M"]
    out = _grouped_candidates((bm,), spec.hidden, spec.intermediate, 1, _elem_bytes(spec), tune_block_m=False)
    return out or [down_default(spec, num_tokens)]


# -- decode GEMMs -------------------------------------------------------------------------------
def decode_block_p(spec: MoESpec, num_tokens: int) -> int:
    """Rows of the decode products: all pairs in one pass when T*k <= 64."""
    return max(16, min(64, next_pow2(num_tokens * spec.top_k)))


def _decode_default(spec: MoESpec, num_tokens: int, n: int, k: int, gates: int) -> dict:
    elem = _elem_bytes(spec)
    pairs = max(1, num_tokens * spec.top_k)
    programs_per_block = min(pairs, spec.num_experts)  # upper bound of experts in use
    block_n = 128
    # narrower N tiles until there are enough programs, but each still streams >= MIN_SLAB_BYTES
    # of weights (tiny layers are launch-bound: more programs would not help there)
    while (
        block_n > 16
        and programs_per_block * math.ceil(n / block_n) < TARGET_PROGRAMS
        and (block_n // 2) * k * elem >= MIN_SLAB_BYTES
    ):
        block_n //= 2
    cfg = {
        "BLOCK_P": decode_block_p(spec, num_tokens),
        "BLOCK_N": _clamp_pow2(block_n, n),
        "BLOCK_K": _clamp_pow2(64 if elem == 4 else 128, k),
        "num_warps": 4,
        "num_stages": 4,
    }
    return shrink_to_fit(cfg["BLOCK_P"], cfg, gates, elem)


def _decode_space(spec: MoESpec, num_tokens: int, n: int, k: int, gates: int) -> list[dict]:
    """[] where path_space never offers the decode path (the tuner then skips these kernels)."""
    if not any(cfg["path"] == "decode" for cfg in path_space(spec, num_tokens)):
        return []
    elem = _elem_bytes(spec)
    block_p = decode_block_p(spec, num_tokens)
    out, seen = [], set()
    for bn, bk, warps, stages in itertools.product((16, 32, 64, 128), (64, 128, 256), (4, 8), (2, 3, 4, 5)):
        cfg = {
            "BLOCK_P": block_p,
            "BLOCK_N": _clamp_pow2(bn, n),
            "BLOCK_K": _clamp_pow2(bk, k),
            "num_warps": warps,
            "num_stages": stages,
        }
        key = tuple(cfg.values())
        if key in seen or not fits(block_p, cfg, gates, elem) or not decode_wgmma_regs_fit(block_p, cfg, gates, elem):
            continue
        seen.add(key)
        out.append(cfg)
    return out or [_decode_default(spec, num_tokens, n, k, gates)]


def decode_gate_up_default(spec: MoESpec, num_tokens: int) -> dict:
    return _decode_default(spec, num_tokens, spec.intermediate, spec.hidden, _gates(spec))


def decode_gate_up_space(spec: MoESpec, num_tokens: int) -> list[dict]:
    return _decode_space(spec, num_tokens, spec.intermediate, spec.hidden, _gates(spec))


def decode_down_default(spec: MoESpec, num_tokens: int) -> dict:
    return _decode_default(spec, num_tokens, spec.hidden, spec.intermediate, 1)


def decode_down_space(spec: MoESpec, num_tokens: int) -> list[dict]:
    return _decode_space(spec, num_tokens, spec.hidden, spec.intermediate, 1)


# name -> (space, default): what moebench.impls.triton_grouped registers
TUNABLES = {
    "path": (path_space, path_default),
    "gate_up": (gate_up_space, gate_up_default),
    "down": (down_space, down_default),
    "decode_gate_up": (decode_gate_up_space, decode_gate_up_default),
    "decode_down": (decode_down_space, decode_down_default),
}
