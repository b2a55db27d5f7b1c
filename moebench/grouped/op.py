"""The layer as torch.library custom ops, so torch.compile and torch.export see one opaque op.

moebench::triton_grouped_moe(x, router, w1, w2, top_k, activation, scoring, renormalize, config)
    -> Tensor [T, H]                      (functional; fake impl: an empty [T, H] like x)
moebench::triton_grouped_moe_out(x, router, w1, w2, out, top_k, ..., config) -> ()
                                         (writes `out`, declared as mutated)

E, H and I come from the weight shapes, the dtype from x; `config` is the {kernel: {param: value}}
dict as a JSON string ("" for none) because custom ops take only plain types. Defining the ops
needs torch alone; triton is imported when an op first runs.
"""

from __future__ import annotations

import json

import torch
from torch import Tensor

from moebench.errors import MoEInputError
from moebench.grouped.config import check_explicit
from moebench.spec import MoESpec, RouterSpec
from moebench.validate import check_inputs
from moebench.weights import MoEWeights

OP_NAME = "moebench::triton_grouped_moe"
OUT_OP_NAME = "moebench::triton_grouped_moe_out"


def encode_config(config: dict | None) -> str:
    check_explicit(config)
    if not config:
        return ""
    try:
        return json.dumps(config, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise MoEInputError(f"config: expected JSON-serialisable values, got {config!r} ({exc})") from None


def decode_config(text: str) -> dict | None:
    return json.loads(text) if text else None


def spec_from_shapes(
    x: Tensor, w1: Tensor, w2: Tensor, top_k: int, activation: str, scoring: str, renormalize: bool
) -> MoESpec:
    if w1.dim() != 3 or w2.dim() != 3:
        raise MoEInputError(f"w1, w2: expected 3-D [E, G*I, H] and [E, H, I], got {list(w1.shape)}, {list(w2.shape)}")
    num_experts, _, hidden = w1.shape
    return MoESpec(num_experts, top_k, hidden, w2.shape[2], activation, x.dtype, RouterSpec(scoring, renormalize))


def _run(x, router, w1, w2, out, top_k, activation, scoring, renormalize, config) -> Tensor:
    from moebench.grouped.forward import moe_forward  # imports triton

    spec = spec_from_shapes(x, w1, w2, top_k, activation, scoring, renormalize)
    check_inputs(x, MoEWeights(spec, router, w1, w2), out, finite=False)
    return moe_forward(x, router, w1, w2, spec, out, decode_config(config))


@torch.library.custom_op(OP_NAME, mutates_args=())
def triton_grouped_moe(
    x: Tensor,
    router: Tensor,
    w1: Tensor,
    w2: Tensor,
    top_k: int,
    activation: str,
    scoring: str,
    renormalize: bool,
    config: str,
) -> Tensor:
    return _run(x, router, w1, w2, None, top_k, activation, scoring, renormalize, config)


@triton_grouped_moe.register_fake
def _triton_grouped_moe_fake(x, router, w1, w2, top_k, activation, scoring, renormalize, config) -> Tensor:
    return x.new_empty(x.shape)


@torch.library.custom_op(OUT_OP_NAME, mutates_args=("out",))
def triton_grouped_moe_out(
    x: Tensor,
    router: Tensor,
    w1: Tensor,
    w2: Tensor,
    out: Tensor,
    top_k: int,
    activation: str,
    scoring: str,
    renormalize: bool,
    config: str,
) -> None:
    _run(x, router, w1, w2, out, top_k, activation, scoring, renormalize, config)


@triton_grouped_moe_out.register_fake
def _triton_grouped_moe_out_fake(x, router, w1, w2, out, top_k, activation, scoring, renormalize, config) -> None:
    return None


def moe_op(x: Tensor, weights: MoEWeights, *, out: Tensor | None = None, config: dict | None = None) -> Tensor:
    """Call the custom op for `weights` (the registry's entry point): out variant when out is given."""
    spec = weights.spec
    args = (spec.top_k, spec.activation, spec.router.scoring, spec.router.renormalize, encode_config(config))
    if out is None:
        return torch.ops.moebench.triton_grouped_moe(x, weights.router, weights.w1, weights.w2, *args)
    torch.ops.moebench.triton_grouped_moe_out(x, weights.router, weights.w1, weights.w2, out, *args)
    return out
