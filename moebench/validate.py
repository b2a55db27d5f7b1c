"""Input checks shared by every implementation (run once by the registry wrapper)."""

from __future__ import annotations

import torch

from moebench.errors import MoEInputError
from moebench.routing import Routing
from moebench.weights import MoEWeights


def check_inputs(
    x: torch.Tensor,
    weights: MoEWeights,
    out: torch.Tensor | None = None,
    *,
    routing: Routing | None = None,
    finite: bool = True,
) -> None:
    """Raise MoEInputError naming the argument when x / weights / out / routing do not fit together.

    finite=True also rejects NaN/Inf in x and in the routing weights and ids outside [0, E) (device syncs
    on a GPU: benchmarks check once, then skip).
    """
    spec = weights.spec
    if not isinstance(x, torch.Tensor):
        raise MoEInputError(f"x: expected a torch.Tensor of shape [T, {spec.hidden}], got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] != spec.hidden:
        raise MoEInputError(f"x: expected shape [T, {spec.hidden}] (hidden={spec.hidden}), got {list(x.shape)}")
    if x.dtype != spec.dtype:
        raise MoEInputError(f"x: expected dtype {spec.dtype} (the spec's dtype), got {x.dtype}")
    if x.device != weights.device:
        raise MoEInputError(f"x: expected device {weights.device} (where the weights are), got {x.device}")
    if finite and x.numel() and not bool(torch.isfinite(x).all()):
        raise MoEInputError("x: expected finite values, found NaN or Inf")
    if out is not None:
        if not isinstance(out, torch.Tensor):
            raise MoEInputError(f"out: expected a torch.Tensor, got {type(out).__name__}")
        if out.shape != x.shape or out.dtype != x.dtype or out.device != x.device:
            raise MoEInputError(
                f"out: expected shape {list(x.shape)}, dtype {x.dtype}, device {x.device}; "
                f"got {list(out.shape)}, {out.dtype}, {out.device}"
            )
        if not out.is_contiguous():
            raise MoEInputError("out: expected a contiguous tensor")
    if routing is not None:
        check_routing(routing, x, weights.spec.num_experts, weights.spec.top_k, finite=finite)


def check_routing(routing: Routing, x: torch.Tensor, num_experts: int, top_k: int, *, finite: bool = True) -> None:
    """A precomputed routing for x: Routing(weights [T, k] fp32, ids [T, k] int64 in [0, E)) on x's device."""
    if not isinstance(routing, Routing):
        raise MoEInputError(f"routing: expected a moebench.routing.Routing(weights, ids), got {type(routing).__name__}")
    shape = (x.shape[0], top_k)
    for name, tensor, dtype in (("weights", routing.weights, torch.float32), ("ids", routing.ids, torch.int64)):
        if not isinstance(tensor, torch.Tensor):
            raise MoEInputError(f"routing.{name}: expected a torch.Tensor, got {type(tensor).__name__}")
        if tuple(tensor.shape) != shape or tensor.dtype != dtype or tensor.device != x.device:
            raise MoEInputError(
                f"routing.{name}: expected shape {list(shape)}, dtype {dtype}, device {x.device}; "
                f"got {list(tensor.shape)}, {tensor.dtype}, {tensor.device}"
            )
    if finite and routing.ids.numel():
        if not bool(((routing.ids >= 0) & (routing.ids < num_experts)).all()):
            low, high = int(routing.ids.min()), int(routing.ids.max())
            raise MoEInputError(
                f"routing.ids: expected expert ids in [0, {num_experts}), got values in [{low}, {high}]"
            )
        if not bool(torch.isfinite(routing.weights).all()):
            raise MoEInputError("routing.weights: expected finite values, found NaN or Inf")
