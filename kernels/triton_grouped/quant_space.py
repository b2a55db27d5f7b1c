"""Tuning space and default config of `quant_gemm` (moebench.kernels.triton_grouped.quant_gemm), the grouped
GEMM of triton_grouped on quantised experts, as functions of (spec, T).

One config serves both launches (gate/up with K = H, down with K = I): BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M,
num_warps, num_stages. BLOCK_M is also the block the routing alignment pads every expert to.

BLOCK_K per weight format (`block_ks`):
  fp8-block128  divides the 128-wide scale block (the kernel applies one activation scale and one weight
                scale per K tile), and at least 32 (an FP8 dot's K step on sm_90);
  mxfp4, intN-gG  a multiple of the scale group (32 for mxfp4, G for the integer formats), so every K tile
                holds whole groups; where K is shorter than a group, the one tile covering all of K.
Shared memory and registers (`quant_fits`): the resource model of the unquantised kernels
(moebench.kernels.triton_grouped.fit.fits) with the operand tiles in the dot's dtype (e4m3 for fp8, the
activations' dtype for the weight-only formats, whose tiles are dequantised and cast to it before the dot),
and fit.quant_regs_fit for the registers only this kernel needs (bounds checked with ptxas).

Pure Python (no triton import): the registry imports it to register the tunable. Unquantised specs have an
empty space (the kernel does not run there); quantised ones have empty spaces for the other kernels
(moebench.impls.triton_grouped.config).
"""

from __future__ import annotations

import itertools

from moebench.kernels.triton_grouped.fit import fits, quant_regs_fit
from moebench.kernels.triton_grouped.space import _clamp_pow2, _elem_bytes, _gates, align_block_m, tuned_block_ms
from moebench.spec import MoESpec

QUANT_KERNEL = "quant_gemm"
QUANT_KEYS = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M", "num_warps", "num_stages")
FP8_MIN_BLOCK_K = 32  # K of one FP8 wgmma step on sm_90
_BLOCK_KS = (32, 64, 128, 256)


def block_k_ok(spec: MoESpec, block_k: int) -> bool:
    """Whether BLOCK_K suits the spec's weight format (see the module docstring); True when unquantised."""
    if spec.quant is None:
        return True
    fmt = spec.quant_format
    group = fmt.group_size
    if fmt.kind == "fp8":
        return block_k >= FP8_MIN_BLOCK_K and group % block_k == 0
    return block_k % group == 0 or block_k >= max(spec.hidden, spec.intermediate)


def block_ks(spec: MoESpec) -> list[int]:
    """The BLOCK_K candidates: powers of two up to the longer K, those block_k_ok keeps."""
    longest = max(spec.hidden, spec.intermediate)
    chosen = sorted({_clamp_pow2(bk, longest) for bk in _BLOCK_KS})
    return [bk for bk in chosen if block_k_ok(spec, bk)]


def _dot_bytes(spec: MoESpec) -> int:
    """Bytes of one operand element of the dot: e4m3 for fp8, else the activations' dtype."""
    if spec.quant is not None and spec.quant_format.kind == "fp8":
        return 1
    return _elem_bytes(spec)


def quant_fits(spec: MoESpec, cfg: dict) -> bool:
    """What fits sm_90: fit.fits (shared memory, accumulator and operand registers) and fit.quant_regs_fit
    (the dequantised tiles, or fp8's scaled dot results; the shared experts' loop), for the gated first layer."""
    gates, elem = _gates(spec), _dot_bytes(spec)
    bm = cfg["BLOCK_M"]
    return fits(bm, cfg, gates, elem) and quant_regs_fit(bm, cfg, gates, fp8=elem == 1, shared=spec.shared.count > 0)


def quant_space(spec: MoESpec, num_tokens: int) -> list[dict]:
    """Candidates with a format-legal BLOCK_K that fit sm_90 (quant_fits); [] for an unquantised spec."""
    if spec.quant is None:
        return []
    longest = max(spec.hidden, spec.intermediate)
    out, seen = [], set()
    for bm, bn, bk, group_m, warps, stages in itertools.product(
        tuned_block_ms(spec, num_tokens), (16, 32, 64, 128, 256), block_ks(spec), (1, 8), (4, 8), (2, 3, 4)
    ):
        if group_m > 1 and bm < 32:
            continue
        cfg = {"BLOCK_M": bm, "BLOCK_N": _clamp_pow2(bn, longest), "BLOCK_K": bk, "GROUP_M": group_m}
        cfg.update(num_warps=warps, num_stages=stages)
        key = tuple(cfg.values())
        if key in seen or not quant_fits(spec, cfg):  # no small-tile rule for 8 warps: dequantising is work too
            continue
        seen.add(key)
        out.append(cfg)
    return out


def quant_default(spec: MoESpec, num_tokens: int) -> dict:
    """The unquantised gate_up's BLOCK_M rule up to 64, the shortest format-legal K tile, N tiles of 64 and
    4 warps, or 8 warps and N tiles as narrow as quant_fits needs. Valid for any spec (an unquantised one
    included: the space's signature asks for it)."""
    bm = min(align_block_m(spec, num_tokens), 64)
    legal = block_ks(spec)
    cfg = {"BLOCK_M": bm, "BLOCK_N": _clamp_pow2(64, max(spec.hidden, spec.intermediate))}
    cfg["BLOCK_K"] = legal[0] if legal else FP8_MIN_BLOCK_K
    cfg.update(GROUP_M=1 if bm < 32 else 8, num_warps=4, num_stages=2)
    if not quant_fits(spec, cfg):  # 8 warps share the dequantisation, then narrower N tiles until it fits
        cfg["num_warps"] = 8
    while not quant_fits(spec, cfg) and cfg["BLOCK_N"] > 16:
        cfg["BLOCK_N"] //= 2
    return cfg
