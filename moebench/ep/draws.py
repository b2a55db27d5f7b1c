"""Seeded routings drawn without a router, to see what a routing's shape does to expert parallelism.

uniform: every token picks k distinct experts uniformly at random.
zipf:    experts ranked in a seeded random order; the expert of rank i (1-based) has weight i^-s.
         Each token draws k distinct experts by Gumbel-top-k on the log weights (sampling without
         replacement, one expert after another), so an expert's share of pairs is close to, but below,
         its weight share for the hottest experts when k > 1.
hot:     one expert (seeded) is in the top-k of exactly round(f * T) tokens (slot 0), the other tokens
         never pick it; all other choices are uniform. The hot expert thus gets round(f * T) of the
         T * k pairs (a fraction f / k of them).
Router weights are drawn uniform in (0, 1], sorted in decreasing order and normalised to sum 1 per
token, in fp32: the shape of a renormalised top-k. Returns (topk_weights [T, k] fp32, topk_ids [T, k]
int64), the order `moebench.routing.route` uses.
"""

from __future__ import annotations

import torch

from moebench.errors import MoEInputError
from moebench.routing import sort_by_expert

KINDS = ("uniform", "zipf", "hot")


def _gumbel_top_k(log_p: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """[T, E] log weights -> [T, k] distinct ids, a draw without replacement."""
    u = torch.rand(log_p.shape, generator=g, dtype=torch.float64).clamp_(min=1e-300)
    return torch.topk(log_p - torch.log(-torch.log(u)), k, dim=-1).indices


def draw_routing(
    num_tokens: int,
    num_experts: int,
    top_k: int,
    kind: str = "uniform",
    *,
    zipf_s: float = 1.0,
    hot_fraction: float = 0.5,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A routing for T tokens over E experts (see the module docstring for each kind), on the CPU."""
    if kind not in KINDS:
        raise MoEInputError(f"kind: expected one of {KINDS}, got {kind!r}")
    if num_tokens < 0:
        raise MoEInputError(f"num_tokens: expected >= 0, got {num_tokens}")
    if not 1 <= top_k <= num_experts:
        raise MoEInputError(f"top_k: expected 1 <= top_k <= num_experts={num_experts}, got {top_k}")
    if kind == "zipf" and zipf_s < 0:
        raise MoEInputError(f"zipf_s: expected >= 0, got {zipf_s}")
    if kind == "hot" and not (0.0 <= hot_fraction <= 1.0 and (top_k < num_experts or hot_fraction == 1.0)):
        raise MoEInputError(f"hot_fraction: expected in [0, 1] (1 when top_k = num_experts), got {hot_fraction}")
    g = torch.Generator().manual_seed(seed)
    ranked = torch.randperm(num_experts, generator=g)  # ranked[i]: the expert of popularity rank i
    log_p = torch.zeros(num_tokens, num_experts, dtype=torch.float64)
    if kind == "zipf":
        log_p[:, ranked] = -zipf_s * torch.log(torch.arange(1, num_experts + 1, dtype=torch.float64))
    if kind != "hot":
        ids = _gumbel_top_k(log_p, top_k, g)
    else:
        hot = int(ranked[0])
        chosen = torch.zeros(num_tokens, dtype=torch.bool)
        chosen[torch.randperm(num_tokens, generator=g)[: round(hot_fraction * num_tokens)]] = True
        log_p[:, hot] = -torch.inf  # picked only when k = E, and then last
        rest = _gumbel_top_k(log_p, top_k, g)
        with_hot = torch.cat([torch.full((num_tokens, 1), hot), rest[:, : top_k - 1]], dim=1)
        ids = torch.where(chosen[:, None], with_hot, rest)
    weights = torch.rand(num_tokens, top_k, generator=g, dtype=torch.float32).mul_(-1).add_(1)  # (0, 1]
    weights = torch.sort(weights, dim=-1, descending=True).values
    return weights / weights.sum(dim=-1, keepdim=True), ids.to(torch.int64)


def expert_loads(topk_ids: torch.Tensor, num_experts: int) -> torch.Tensor:
    """[E] int64: pairs routed to each expert."""
    return sort_by_expert(topk_ids, num_experts)[1]


def imbalance(loads: torch.Tensor) -> float:
    """max / mean of loads (1.0 = perfectly even; 1.0 for no load at all)."""
    mean = float(loads.double().mean()) if loads.numel() else 0.0
    return float(loads.max()) / mean if mean else 1.0
