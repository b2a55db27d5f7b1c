"""The (token, expert) pairs the Triton kernels run, with the layer's options folded in.

Both Triton implementations run the whole layer as one set of routed pairs:
  * routed pairs: the k experts of each token from the routing (moebench.routing);
  * shared experts, as extra experts every token is routed to: shared expert s is cut into
    C = ceil(I_s / I) chunks of I intermediate columns (zero-padded when I does not divide I_s: a zero
    pre-activation gives a zero activation for every activation and shared experts have no biases),
    and chunk j = s * C + c becomes expert E + j. The FFN of a chunk is the FFN of the shared expert
    restricted to its columns, so the chunks' outputs sum to the shared expert's. Each token then has
    k' = k + S*C slots; the combine sums them all (DeepSeek-V3: I_s = I, one extra expert; Qwen1.5-MoE:
    I_s = 4 I, four; Llama-4 Scout: I_s = I, one);
  * router weights split by where they apply: `out_weights` scale an expert's output (the default, and
    the shared experts' sigmoid gate), `in_weights` its input (router.weight_on = "input", Llama-4:
    routed slots only, shared slots take x unscaled). None means all ones (the kernels skip it).

The shared chunks are laid out like the routed weights ([S*C, G*I, H] and [S*C, H, I], with w1's and
w2's inner strides), so a kernel reads either by swapping one base pointer
(moebench.kernels.common.epilogue.expert_base). Inference builds them once per set of weight tensors
(cached by tensor identity, version counter and pointer: the custom ops rebuild MoEWeights on every
call, so MoEWeights.derived could not keep them); training builds them with differentiable torch ops
on every call, so autograd returns the shared experts' gradients through them.

Every call records moebench.stats SHARED_STAT (how the shared experts ran) when the spec has any.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from moebench.routing import Routing, router_logits
from moebench.spec import MoESpec
from moebench.stats import SHARED_STAT, record_stat
from moebench.weights import MoEWeights


@dataclass(frozen=True)
class LayerPairs:
    """ids [T, k'] int64 (routed ids, then E + j for shared chunk j); in_weights / out_weights [T, k'] fp32
    or None (all ones); num_experts E' = E + S*C (routed and chunk experts), routed_experts E;
    shared_w1 [S*C, G*I, H], shared_w2 [S*C, H, I] (None without shared experts)."""

    ids: torch.Tensor
    in_weights: torch.Tensor | None
    out_weights: torch.Tensor | None
    num_experts: int
    routed_experts: int
    shared_w1: torch.Tensor | None = None
    shared_w2: torch.Tensor | None = None

    @property
    def top_k(self) -> int:
        return self.ids.shape[1]

    @property
    def has_shared(self) -> bool:
        return self.shared_w1 is not None


def shared_chunks_per_expert(spec: MoESpec) -> int:
    """C: chunks of I columns per shared expert (0 without shared experts)."""
    return -(-spec.shared.intermediate // spec.intermediate) if spec.shared.count else 0


def describe_shared(spec: MoESpec) -> str:
    """How the Triton implementations run the shared experts of `spec` (the SHARED_STAT value)."""
    s, i_s, i, c = spec.shared.count, spec.shared.intermediate, spec.intermediate, shared_chunks_per_expert(spec)
    text = f"in the grouped GEMMs: {s} x {c} appended expert(s) of I={i} (I_s={i_s}"
    text += f", zero-padded to {c * i})" if c * i != i_s else ")"
    return text + (", sigmoid-gated" if spec.shared.gated else "")


def layer_pairs(x: torch.Tensor, weights: MoEWeights, routing: Routing, *, differentiable: bool = False) -> LayerPairs:
    """The pairs of this call (see the module docstring). `routing` holds the routed weights [T, k] fp32 and
    ids [T, k] int64; differentiable=True (training) keeps every weight on the autograd graph."""
    spec, (topk_weights, topk_ids) = weights.spec, routing
    num_tokens, e = x.shape[0], spec.num_experts
    on_input = spec.router.weight_on == "input"
    if not spec.shared.count:
        return LayerPairs(topk_ids, topk_weights if on_input else None, None if on_input else topk_weights, e, e)

    record_stat(SHARED_STAT, describe_shared(spec))
    chunks = shared_chunks_per_expert(spec)
    extra = spec.shared.count * chunks
    ids = torch.cat([topk_ids, torch.arange(e, e + extra, device=x.device).expand(num_tokens, extra)], dim=1)
    ones = torch.ones(num_tokens, extra, dtype=torch.float32, device=x.device)
    gates = ones
    if spec.shared.gated:  # sigmoid(x . shared_gate[s]) in fp32, the same for the chunks of s
        gates = torch.sigmoid(router_logits(x, weights.shared_gate)).repeat_interleave(chunks, dim=1)
    if on_input:
        in_weights = torch.cat([topk_weights, ones], dim=1)
        out_weights = torch.cat([torch.ones_like(topk_weights), gates], dim=1) if spec.shared.gated else None
    else:
        in_weights, out_weights = None, torch.cat([topk_weights, gates], dim=1)
    if differentiable:
        shared_w1, shared_w2 = _chunked(weights)
    else:
        shared_w1, shared_w2 = _cached_chunks(weights)
    return LayerPairs(ids, in_weights, out_weights, e + extra, e, shared_w1, shared_w2)


def _chunked(weights: MoEWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """shared_w1 [S, G*I_s, H] -> [S*C, G*I, H] and shared_w2 [S, H, I_s] -> [S*C, H, I] (torch ops: autograd
    sees them), zero-padded to C*I columns, in w1's and w2's inner strides."""
    spec = weights.spec
    s, i, i_s, h = spec.shared.count, spec.intermediate, spec.shared.intermediate, spec.hidden
    g, chunks = (2 if spec.gated else 1), shared_chunks_per_expert(spec)
    pad = chunks * i - i_s
    w1 = F.pad(weights.shared_w1.reshape(s, g, i_s, h), (0, 0, 0, pad))
    w1 = w1.reshape(s, g, chunks, i, h).transpose(1, 2).reshape(s * chunks, g * i, h)
    w2 = F.pad(weights.shared_w2, (0, pad)).reshape(s, h, chunks, i).transpose(1, 2).reshape(s * chunks, h, i)
    return _with_inner_strides(w1, weights.w1), _with_inner_strides(w2, weights.w2)


def _with_inner_strides(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """t [n, r, c], or a copy of it whose [r, c] matrices have like's strides (the kernels read both with one
    set of inner strides)."""
    if t.stride()[1:] == like.stride()[1:]:
        return t
    rows, cols = t.shape[1:]
    s1, s2 = like.stride()[1:]
    extent = (rows - 1) * s1 + (cols - 1) * s2 + 1
    return torch.empty_strided(t.shape, (extent, s1, s2), dtype=t.dtype, device=t.device).copy_(t)


# (id of shared_w1, shared_w2, w1, w2) -> (stamps, weak references, chunks); an entry goes with its shared_w1
_CHUNKS: dict[tuple[int, ...], tuple] = {}


def _stamp(t: torch.Tensor) -> tuple:
    """What must not change for a cached copy of t to stay valid: storage, layout and in-place writes."""
    try:
        version = t._version
    except RuntimeError:  # inference-mode tensors keep no version counter
        version = None
    return (t.data_ptr(), t.shape, t.stride(), t.dtype, t.device, version)


def _cached_chunks(weights: MoEWeights) -> tuple[torch.Tensor, torch.Tensor]:
    sources = (weights.shared_w1, weights.shared_w2, weights.w1, weights.w2)
    key = tuple(id(t) for t in sources)
    stamps = tuple(_stamp(t) for t in sources)
    hit = _CHUNKS.get(key)
    if hit is not None and hit[0] == stamps and all(ref() is t for ref, t in zip(hit[1], sources)):
        return hit[2]
    with torch.no_grad():
        chunks = _chunked(weights)
    _CHUNKS[key] = (stamps, tuple(weakref.ref(t) for t in sources), chunks)
    if hit is None:
        weakref.finalize(weights.shared_w1, _CHUNKS.pop, key, None)
    return chunks
