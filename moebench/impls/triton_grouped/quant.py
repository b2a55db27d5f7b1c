"""triton_grouped on quantised experts (spec.quant): route -> pairs -> two quantised GEMMs -> combine.

The kernels read the packed weights as stored (codes, scales, zero points: moebench.quant.QuantizedExperts) and
dequantise tiles in registers, so a weight-bound run reads the packed bytes only. fp8-block128 quantises the
activations per token in groups of 128 first (moebench.kernels.common.fp8.act_quant_kernel) and runs FP8 dots
with the block scales per K tile; the activation's output h is written in fp32 and quantised the same way for
the down GEMM. Every spec option is honoured, as in the unquantised kernels: the routing options by
moebench.routing, shared experts as appended experts (moebench.impls.common.pairs; their weights are not
quantised: the spec quantises the routed experts only, and the kernels read the chunks in the compute dtype on
the unquantised input), router weight on the input or the output, expert biases and the SwiGLU options in the
epilogues (moebench.kernels.triton_grouped.quant_tiles).

Two paths, chosen like the unquantised ones (the `path` tunable; decode when T*k <= 32): grouped
(moebench.kernels.triton_grouped.quant_gemm, over expert-sorted pairs padded to BLOCK_M) and decode
(quant_decode: no alignment launches, one program per expert streaming its packed weights once). One tunable,
"quant_gemm" (space and default per weight format: moebench.kernels.triton_grouped.quant_space), configures both
GEMMs of either path (BLOCK_M is decode's pairs per product), resolved like the other kernels' configs
(explicit > pinned > tuned cache > default; moebench.impls.triton_grouped.config.resolve_quant_config).

What this path does not do yet:
  - it is called directly by the registered function, not through the torch.library custom op (the op's
    schema has no quantised tensors), so torch.compile sees it as Python;
  - the weight-only kernels load a code byte per weight element (each 4-bit byte twice), and the integer
    formats also a scale per element (one value repeated across its group), and pipeline them that way:
    an int4-g128 tile takes 1 + 4 bytes of shared memory per weight (compile_check, sm_90), which limits
    its tiles (fit.quant_regs_fit); not yet measured on a GPU.
"""

from __future__ import annotations

import torch

from moebench.impls.common.pairs import LayerPairs, layer_pairs
from moebench.impls.triton_grouped.config import resolve_quant_config
from moebench.kernels.common.interpreter import dot_flags, interpreting, store_flags
from moebench.quant.formats import get_format
from moebench.routing import Routing, route_unless_given
from moebench.weights import MoEWeights


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
    from moebench.impls.common.combine import combine  # imports triton

    spec, num_tokens = weights.spec, x.shape[0]
    path, cfg = resolve_quant_config(spec, num_tokens, x.device, config)
    if out is None:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if num_tokens == 0:
        return out
    x = x if x.stride(1) == 1 else x.contiguous()
    pairs = layer_pairs(x, weights, route_unless_given(x, weights, routing))  # shared experts appended
    num_pairs = num_tokens * pairs.top_k
    y = out if pairs.top_k == 1 else torch.empty(num_pairs, spec.hidden, dtype=out.dtype, device=out.device)
    _QuantFFN(x, weights, pairs, cfg, path).run(y)
    combine(y, None, out, pairs.top_k)
    return out


class _QuantFFN:
    """The two launches of one forward (gate/up, then down) on `path`, with what they share."""

    def __init__(self, x: torch.Tensor, weights: MoEWeights, pairs: LayerPairs, cfg: dict, path: str):
        from moebench.kernels.common.activation import activation_constexprs
        from moebench.kernels.triton_grouped.quant_tiles import QUANT_FMT_CODES

        spec, fmt = weights.spec, get_format(weights.spec.quant)
        self.x, self.weights, self.pairs, self.cfg = x, weights, pairs, cfg
        self.fp8 = fmt.kind == "fp8"
        self.act_group = fmt.act_group
        self.num_pairs = x.shape[0] * pairs.top_k
        code = QUANT_FMT_CODES["fp8" if self.fp8 else "mxfp4" if fmt.kind == "mxfp4" else f"int{fmt.bits}"]
        tiles = {key: cfg[key] for key in ("BLOCK_M", "BLOCK_N", "BLOCK_K")}
        self.fixed = dict(
            FMT=code, ASYM=not fmt.symmetric, GROUP=fmt.block[1], SCALE_ROWS=fmt.block[0], **tiles,
            **activation_constexprs(spec), SCALE_INPUT=pairs.in_weights is not None,
            SCALE_OUTPUT=pairs.out_weights is not None, HAS_BIAS=weights.b1 is not None, HAS_SHARED=pairs.has_shared,
            **dot_flags(x.dtype), **store_flags(x.dtype), num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
        )  # fmt: skip
        flat = lambda t, stand_in: stand_in if t is None else t.reshape(-1).contiguous()  # noqa: E731
        self.in_w = flat(pairs.in_weights, x)
        self.out_w = flat(pairs.out_weights, x)
        self.aligned = None  # grouped: expert-sorted pairs padded to BLOCK_M (moebench.impls.common.align)
        if path == "grouped":
            from moebench.impls.common.align import align_pairs  # imports triton

            self.aligned = align_pairs(pairs.ids, pairs.num_experts, cfg["BLOCK_M"])

    def run(self, y: torch.Tensor) -> None:
        """h = act(x @ w1.T ...) per row, then y [P, H] (or out) = down(h) per pair."""
        spec, q, w = self.weights.spec, self.weights.quant, self.weights
        x, rows, h_rows = self.x, None, self.num_pairs  # decode: h per pair
        if self.aligned is not None:  # grouped: h per sorted position; fp8 quantises the rows that hold a pair
            h_rows, rows = self.aligned.max_blocks * self.cfg["BLOCK_M"], self.aligned.sorted_pairs
        shared = self.pairs.shared_w1, self.pairs.shared_w2
        h = torch.empty(h_rows, spec.intermediate, dtype=torch.float32 if self.fp8 else x.dtype, device=x.device)
        self._launch(x, q.w1, shared[0], w.b1, h, spec.intermediate, spec.hidden, True, None)
        self._launch(h, q.w2, shared[1], w.b2, y, spec.hidden, spec.intermediate, False, rows)

    def _launch(self, a, w, sh, bias, dst, n: int, k: int, first: bool, act_rows) -> None:
        from moebench.kernels.triton_grouped.quant_decode import quant_decode_kernel
        from moebench.kernels.triton_grouped.quant_gemm import quant_grouped_kernel

        plain = a
        a, a_scale = _act_quant(a, self.act_group, act_rows, self.num_pairs) if self.fp8 else (a, a)
        zero = w.zero if w.zero is not None else w.scale  # stand-ins for tensors a switch leaves unread
        sh = w.data if sh is None else sh
        bias = a if bias is None else bias.contiguous()
        bn, pairs = self.cfg["BLOCK_N"], self.pairs
        args = (
            a, a_scale, plain, w.data, w.scale, zero, sh, dst, self.in_w, self.out_w, bias,
        )  # fmt: skip
        strides = (
            a.stride(0), a_scale.stride(0), plain.stride(0), w.data.stride(0), w.data.stride(1), w.scale.stride(0),
            w.scale.stride(1), zero.stride(0), zero.stride(1), sh.stride(0), sh.stride(1), sh.stride(2),
            bias.stride(0), dst.stride(0),
        )  # fmt: skip
        flags = dict(FIRST=first, EVEN_K=k % self.cfg["BLOCK_K"] == 0, **self.fixed)
        if self.aligned is not None:
            al = self.aligned
            grid = (al.max_blocks * -(-n // bn),)
            quant_grouped_kernel[grid](
                *args, al.sorted_pairs, al.block_expert, al.num_blocks,
                self.num_pairs, pairs.top_k, n, k, al.max_blocks, pairs.routed_experts, *strides,
                GROUP_M=self.cfg["GROUP_M"], **flags,
            )  # fmt: skip
        else:
            by_expert = self.num_pairs > pairs.num_experts
            grid = (pairs.num_experts if by_expert else self.num_pairs, -(-n // bn))
            quant_decode_kernel[grid](
                *args, pairs.ids.reshape(-1).contiguous(), self.num_pairs, pairs.top_k, n, k, pairs.routed_experts,
                *strides, BY_EXPERT=by_expert, **flags,
            )  # fmt: skip
