"""The whole `triton_grouped` layer on plain tensors: route -> pick a path -> FFN -> combine.

Path rule (the `path` tunable; default in moebench.kernels.triton_grouped.space.path_default): decode
when T*k <= 32, grouped otherwise; config={"path": {"path": "decode"}} (or "grouped") forces one.
Both paths are correct for every T; the rule only picks the faster one.
"""

from __future__ import annotations

import torch

from moebench.impls.common.pairs import layer_pairs
from moebench.impls.triton_grouped.config import resolve_launch_configs
from moebench.impls.triton_grouped.ffn import run_ffn
from moebench.routing import Routing, route_unless_given
from moebench.weights import MoEWeights


def moe_forward(
    x: torch.Tensor,  # [T, H] compute dtype, any strides
    weights: MoEWeights,  # router [E, H], w1 [E, G*I, H], w2 [E, H, I], and the spec's optional tensors
    out: torch.Tensor | None = None,  # [T, H], unit column stride
    config: dict | None = None,
    routing: Routing | None = None,  # precomputed (weights [T, k] fp32, ids [T, k] int64); None: route here
) -> torch.Tensor:
    """The MoE layer, every spec option included; writes `out` (allocated when None) and returns it.
    T=0 launches nothing."""
    spec, num_tokens = weights.spec, x.shape[0]
    if out is None:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    configs = resolve_launch_configs(spec, num_tokens, x.device, config)
    if num_tokens == 0:
        return out
    pairs = layer_pairs(x, weights, route_unless_given(x, weights, routing))  # shared experts appended
    return run_ffn(configs.path, x, weights, pairs, out, configs.first, configs.second)
