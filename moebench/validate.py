"""Input checks shared by every implementation (run once by the registry wrapper)."""

from __future__ import annotations

import torch

from moebench.errors import MoEInputError
from moebench.weights import MoEWeights


def check_inputs(x: torch.Tensor, weights: MoEWeights, out: torch.Tensor | None = None, *, finite: bool = True) -> None:
    """Raise MoEInputError naming the argument when x / weights / out do not fit together.

    finite=True also rejects NaN/Inf in x (a device sync on GPU: benchmarks check once, then skip).
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
