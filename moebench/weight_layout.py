"""Which tensors a layer of a given spec has, their shapes and dtypes, and the check that given tensors fit.

tensor_layout(spec) is a function of the spec alone: the contract every implementation, converter and
generator of weights reads. check_tensors holds MoEWeights to it (one clear error naming the tensor and the
option that asks for it), kept here next to the table so the two cannot drift apart.
"""

from __future__ import annotations

import torch

from moebench.errors import MoEInputError
from moebench.quant.experts import QuantizedExperts
from moebench.spec import MoESpec

TENSOR_NAMES: tuple[str, ...] = (
    "router",
    "w1",
    "w2",
    "router_bias",
    "selection_bias",
    "b1",
    "b2",
    "shared_w1",
    "shared_w2",
    "shared_gate",
)
_WHY = {  # the option that asks for each optional tensor
    "router_bias": "router.bias",
    "selection_bias": "router.selection_bias",
    "b1": "expert.bias",
    "b2": "expert.bias",
    "shared_w1": "shared.count",
    "shared_w2": "shared.count",
    "shared_gate": "shared.gated",
}


def tensor_layout(spec: MoESpec) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """name -> (shape, dtype) of every tensor `spec` needs, in TENSOR_NAMES order.

    router [E, H], w1 [E, G*I, H] (G=2 for swiglu: gate rows then up rows), w2 [E, H, I]: spec dtype
    router_bias [E] spec dtype; selection_bias [E] fp32 (only compared, never multiplied)
    b1 [E, G*I], b2 [E, H]: spec dtype
    shared_w1 [S, G*I_s, H], shared_w2 [S, H, I_s], shared_gate [S, H]: spec dtype
    """
    e, h, i, d = spec.num_experts, spec.hidden, spec.intermediate, spec.dtype
    s, i_s = spec.shared.count, spec.shared.intermediate
    layout = {"router": ((e, h), d), "w1": ((e, spec.w1_rows, h), d), "w2": ((e, h, i), d)}
    if spec.router.bias:
        layout["router_bias"] = ((e,), d)
    if spec.router.selection_bias:
        layout["selection_bias"] = ((e,), torch.float32)
    if spec.expert.bias:
        layout["b1"] = ((e, spec.w1_rows), d)
        layout["b2"] = ((e, h), d)
    if s:
        layout["shared_w1"] = ((s, spec.shared_w1_rows, h), d)
        layout["shared_w2"] = ((s, h, i_s), d)
    if spec.shared.gated:
        layout["shared_gate"] = ((s, h), d)
    return layout


def check_tensors(spec: MoESpec, tensors: dict[str, torch.Tensor | None], quant: QuantizedExperts | None) -> None:
    """Raise MoEInputError unless `tensors` (name -> tensor or None, every name of TENSOR_NAMES) and `quant`
    are exactly what `spec` asks for: each tensor of tensor_layout(spec) in its shape and dtype, every
    other one None, `quant` in spec.quant's format exactly when spec.quant is set, all on one device."""
    if not isinstance(spec, MoESpec):
        raise MoEInputError(f"spec: expected a MoESpec, got {type(spec).__name__}")
    layout = tensor_layout(spec)
    for name in TENSOR_NAMES:
        t = tensors[name]
        if name not in layout:
            if t is not None:
                raise MoEInputError(f"{name}: expected None ({_WHY[name]} is off in {spec.describe()}), got a tensor")
            continue
        shape, dtype = layout[name]
        if not isinstance(t, torch.Tensor):
            why = f" ({_WHY[name]} is on)" if name in _WHY else ""
            raise MoEInputError(f"{name}: expected a torch.Tensor of shape {list(shape)}{why}, got {type(t).__name__}")
        if tuple(t.shape) != shape:
            raise MoEInputError(f"{name}: expected shape {list(shape)} for {spec.describe()}, got {list(t.shape)}")
        if t.dtype != dtype:
            raise MoEInputError(f"{name}: expected dtype {dtype}, got {t.dtype}")
    _check_quant(spec, tensors, quant)
    devices = {str(t.device) for t in tensors.values() if t is not None}
    if quant is not None:
        devices.add(str(quant.w1.data.device))
    if len(devices) != 1:
        raise MoEInputError(f"weights: all tensors must be on one device, got {sorted(devices)}")


def _check_quant(spec: MoESpec, tensors: dict[str, torch.Tensor | None], q: QuantizedExperts | None) -> None:
    if spec.quant is None:
        if q is not None:
            raise MoEInputError(f"quant: expected None (spec.quant is None in {spec.describe()}), got {q.fmt.name}")
        return
    if not isinstance(q, QuantizedExperts):
        raise MoEInputError(f"quant: expected QuantizedExperts in {spec.quant} (spec.quant), got {type(q).__name__}")
    if q.fmt.name != spec.quant:
        raise MoEInputError(f"quant: expected format {spec.quant} (spec.quant), got {q.fmt.name}")
    for name in ("w1", "w2"):
        want, got = list(tensors[name].shape), list(getattr(q, name).shape)
        if got != want:
            raise MoEInputError(f"quant.{name}: expected shape {want}, got {got}")
