"""triton_grouped on quantised experts (spec.quant): route -> align -> quantised grouped GEMMs -> combine.

The kernels (moebench.kernels.triton_grouped.quant_gemm) read the packed weights as stored (codes, scales,
zero points: moebench.quant.QuantizedExperts) and dequantise tiles in registers, so a weight-bound run
reads the packed bytes only. fp8-block128 quantises the activations per token in groups of 128 first
(moebench.kernels.common.fp8.act_quant_kernel) and runs FP8 dots with the block scales per K tile; the
activation's output h is written in fp32 and quantised the same way for the down GEMM.

What this path does not do yet (said here, refused where it matters):
  - it is called directly by the registered function, not through the torch.library custom op (the op's
    schema has no quantised tensors), so torch.compile sees it as Python;
  - one path (the grouped one, correct for every T; no separate decode kernels for small T). Its one
    tunable, "quant_gemm" (space and default per weight format: moebench.kernels.triton_grouped.quant_space),
    configures both GEMMs and is resolved like the other kernels' configs (explicit > pinned > tuned cache >
    default; moebench.impls.triton_grouped.config.resolve_quant_config); `moebench tune` on a quantised spec
    tunes it and nothing else;
  - the weight-only kernels load a code byte per weight element (each 4-bit byte twice), and the integer
    formats also a scale per element (one value repeated across its group), and pipeline them that way:
    an int4-g128 tile takes 1 + 4 bytes of shared memory per weight (compile_check, sm_90), which limits
    its tiles (fit.quant_regs_fit); not yet measured on a GPU;
  - only the options that shape the routing (`quant_unsupported` refuses expert biases, SwiGLU options,
    shared experts and input weighting).
"""

from __future__ import annotations

import torch

from moebench.impls.triton_grouped.config import resolve_quant_config
from moebench.kernels.common.interpreter import dot_flags, interpreting, store_flags
from moebench.quant.formats import get_format
from moebench.routing import Routing, route_unless_given
from moebench.spec import ROUTING_ONLY, MoESpec
from moebench.weights import MoEWeights


def quant_unsupported(spec: MoESpec) -> str | None:
    """Why the quantised path cannot run `spec` (None when it can): options beyond the routing."""
    extra = sorted(spec.features() - ROUTING_ONLY)
    if extra:
        return (
            f"quant={spec.quant}: triton_grouped's quantised kernels do not honour {', '.join(extra)} "
            "(their epilogues have routing options only)"
        )
    return None


def _act_quant(a: torch.Tensor, group: int, rows: torch.Tensor | None = None, num_valid: int = 0):
    """a [R, K] -> (e4m3 codes [R, K], fp32 scales [R, ceil(K/group)]); rows: skip padding rows (pair id)."""
    from moebench.kernels.common.fp8 import act_quant_kernel

    r, k = a.shape
    q = torch.empty(r, k, dtype=torch.float8_e4m3fn, device=a.device)
    s = torch.empty(r, -(-k // group), dtype=torch.float32, device=a.device)
    if r:
        act_quant_kernel[(r, s.shape[1])](
            a, q, s, a if rows is None else rows, num_valid, k, a.stride(0), q.stride(0), s.stride(0),
            ROW_CHECK=rows is not None, GROUP=group, ROUND_FP8=interpreting(),
        )  # fmt: skip
    return q, s


def quant_forward(
    x: torch.Tensor,  # [T, H] compute dtype, unit column stride
    weights: MoEWeights,  # with weights.quant
    out: torch.Tensor | None = None,  # [T, H], contiguous
    config: dict | None = None,
    routing: Routing | None = None,
) -> torch.Tensor:
    from moebench.impls.common.align import align_pairs  # these import triton
    from moebench.impls.common.combine import combine
    from moebench.kernels.common.activation import ACTIVATION_CODES
    from moebench.kernels.triton_grouped.quant_gemm import QUANT_FMT_CODES, quant_grouped_kernel

    spec, quant = weights.spec, weights.quant
    fmt = get_format(spec.quant)
    cfg = resolve_quant_config(spec, x.shape[0], x.device, config)
    if out is None:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    num_tokens = x.shape[0]
    if num_tokens == 0:
        return out
    x = x if x.stride(1) == 1 else x.contiguous()
    topk_weights, topk_ids = route_unless_given(x, weights, routing)  # [T, k] fp32, [T, k] int64
    num_pairs, bm = num_tokens * spec.top_k, cfg["BLOCK_M"]
    aligned = align_pairs(topk_ids, spec.num_experts, bm)
    fp8 = fmt.kind == "fp8"
    code = QUANT_FMT_CODES["fp8" if fp8 else "mxfp4" if fmt.kind == "mxfp4" else f"int{fmt.bits}"]
    flags = {**dot_flags(x.dtype), **store_flags(x.dtype)}
    launch = {"num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"]}
    tiles = {"BLOCK_M": bm, "BLOCK_N": cfg["BLOCK_N"], "BLOCK_K": cfg["BLOCK_K"], "GROUP_M": cfg["GROUP_M"]}
    fixed = dict(FMT=code, ASYM=not fmt.symmetric, GROUP=fmt.block[1], SCALE_ROWS=fmt.block[0], **tiles, **flags)

    def gemm(a, a_scale, w, dst, n, k, first: bool):
        zero = w.zero if w.zero is not None else w.scale  # unused unless ASYM
        grid = (aligned.max_blocks * -(-n // cfg["BLOCK_N"]),)
        quant_grouped_kernel[grid](
            a, a_scale, w.data, w.scale, zero, dst, topk_weights.reshape(-1).contiguous(),
            aligned.sorted_pairs, aligned.block_expert, aligned.num_blocks,
            num_pairs, spec.top_k, n, k, aligned.max_blocks,
            a.stride(0), a_scale.stride(0), w.data.stride(0), w.data.stride(1), w.scale.stride(0),
            w.scale.stride(1), zero.stride(0), zero.stride(1), dst.stride(0),
            FIRST=first, ACTIVATION=ACTIVATION_CODES[spec.activation], **fixed, **launch,
        )  # fmt: skip

    hidden, inter = spec.hidden, spec.intermediate
    h = torch.empty(aligned.max_blocks * bm, inter, dtype=torch.float32 if fp8 else x.dtype, device=x.device)
    a, a_scale = _act_quant(x, fmt.act_group) if fp8 else (x, x)
    gemm(a, a_scale, quant.w1, h, inter, hidden, True)
    a, a_scale = _act_quant(h, fmt.act_group, aligned.sorted_pairs, num_pairs) if fp8 else (h, h)
    y = out if spec.top_k == 1 else torch.empty(num_pairs, hidden, dtype=out.dtype, device=out.device)
    gemm(a, a_scale, quant.w2, y, hidden, inter, False)
    combine(y, None, out, spec.top_k)
    return out
