"""padded_batch: tokens grouped per expert into an [E, C, H] batch, then two batched matmuls.

Two modes:
  * `padded_batch` (dropless): C = the largest expert load. Reading that load is a host sync.
  * `padded_batch_capacity`: C = ceil(capacity_factor * T * k / E) (Switch / GShard), static, so
    no host sync; (token, slot) pairs beyond an expert's capacity are DROPPED (contribute zero).
    The dropped pairs are reported through moebench.stats ('dropped_pairs': [T, k] bool,
    'num_dropped'), never hidden. config={'capacity_factor': float} overrides the default 1.25.
Both honour every spec option (shared experts as a dense FFN per shared expert, never dropped).
"""

from __future__ import annotations

import math

import torch

from moebench.activations import add_shared_experts, apply_activation, expert_biases, expert_inputs, output_weights
from moebench.errors import MoEInputError
from moebench.registry import register
from moebench.routing import route_unless_given, sort_by_expert
from moebench.spec import FEATURES
from moebench.stats import record_stat
from moebench.weights import MoEWeights

DEFAULT_CAPACITY_FACTOR = 1.25


def _padded_forward(x: torch.Tensor, weights: MoEWeights, capacity: int | None, out: torch.Tensor | None, routing):
    spec = weights.spec
    e, k = spec.num_experts, spec.top_k
    num_tokens = x.shape[0]
    topk_weights, topk_ids = route_unless_given(x, weights, routing)  # [T, k] fp32, [T, k] int64
    order, counts, offsets = sort_by_expert(topk_ids, e)  # [T*k], [E], [E+1]
    sorted_expert = topk_ids.reshape(-1)[order]  # [T*k]
    pos_in_expert = torch.arange(order.numel(), device=x.device) - offsets[sorted_expert]
    if capacity is None:
        capacity = int(counts.max()) if order.numel() else 0  # dropless: host sync
    kept = pos_in_expert < capacity  # [T*k] in sorted order
    slot_of_pair = torch.where(kept, sorted_expert * capacity + pos_in_expert, e * capacity)  # dropped -> trash row
    token_of_pair = order // k

    pair_weight = topk_weights.reshape(-1)[order]  # [T*k] fp32, sorted order
    x_pad = x.new_zeros(e * capacity + 1, spec.hidden)  # last row collects dropped pairs
    x_pad[slot_of_pair] = expert_inputs(spec, x[token_of_pair], pair_weight)
    x_pad = x_pad[:-1].view(e, capacity, spec.hidden)
    b1, b2 = expert_biases(weights, slice(None))  # [E, G*I], [E, H] or None
    h1 = torch.bmm(x_pad, weights.w1.transpose(1, 2))  # [E, C, G*I]
    h = apply_activation(spec, h1 if b1 is None else h1 + b1[:, None, :])  # [E, C, I]
    y_pad = torch.bmm(h, weights.w2.transpose(1, 2))  # [E, C, H]
    y_pad = (y_pad if b2 is None else y_pad + b2[:, None, :]).reshape(e * capacity, spec.hidden)
    y_pad = torch.cat([y_pad, y_pad.new_zeros(1, spec.hidden)])

    factor = output_weights(spec, pair_weight) * kept  # [T*k] fp32, zero for dropped pairs
    acc = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    acc.index_add_(0, token_of_pair, y_pad[slot_of_pair].float() * factor[:, None])
    add_shared_experts(acc, x, weights)

    dropped = torch.zeros(num_tokens * k, dtype=torch.bool, device=x.device)
    dropped[order] = ~kept
    record_stat("dropped_pairs", dropped.view(num_tokens, k))
    record_stat("num_dropped", (~kept).sum())
    record_stat("capacity", capacity)
    if out is None:
        return acc.to(x.dtype)
    return out.copy_(acc)


@register(
    "padded_batch",
    kind="padded",
    description="tokens padded per expert to the largest load, batched matmuls (dropless)",
    backward=True,
    graph_safe=False,
    features=FEATURES,
)
def padded_batch(x: torch.Tensor, weights: MoEWeights, *, out=None, config=None, routing=None) -> torch.Tensor:
    return _padded_forward(x, weights, capacity=None, out=out, routing=routing)


def capacity_for(num_tokens: int, top_k: int, num_experts: int, capacity_factor: float) -> int:
    return math.ceil(capacity_factor * num_tokens * top_k / num_experts)


@register(
    "padded_batch_capacity",
    kind="padded",
    description="capacity-factor padding (Switch/GShard, default cf=1.25): DROPS overflow pairs, reports them",
    backward=True,
    drops_tokens=True,
    features=FEATURES,
)
def padded_batch_capacity(x: torch.Tensor, weights: MoEWeights, *, out=None, config=None, routing=None) -> torch.Tensor:
    factor = (config or {}).get("capacity_factor", DEFAULT_CAPACITY_FACTOR)
    if not isinstance(factor, (int, float)) or factor <= 0:
        raise MoEInputError(f"config['capacity_factor']: expected a positive number, got {factor!r}")
    spec = weights.spec
    capacity = capacity_for(x.shape[0], spec.top_k, spec.num_experts, factor)
    return _padded_forward(x, weights, capacity, out, routing)
