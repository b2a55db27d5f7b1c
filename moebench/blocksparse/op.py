"""block_sparse inference as torch.library custom ops, so torch.compile and torch.export see one op.

moebench::block_sparse_moe(x, router, w1, w2, top_k, activation, scoring, renormalize, config)
    -> Tensor [T, H]                      (functional; fake impl: an empty [T, H] like x)
moebench::block_sparse_moe_out(x, router, w1, w2, out, top_k, ..., config) -> ()
                                         (writes `out`, declared as mutated)

The conventions of moebench.grouped.op: E, H and I come from the weight shapes, the dtype from x,
`config` is the {kernel: {param: value}} dict as a JSON string ("" for none). Training does not go
through these ops: its backward needs the blocks the forward saves, which the autograd.Function
(moebench.blocksparse.autograd) keeps and an opaque op could not hand over.
"""

from __future__ import annotations

import json

import torch
from torch import Tensor

from moebench.errors import MoEInputError
from moebench.grouped.op import spec_from_shapes
from moebench.kernels.bsr_space import KERNELS
from moebench.validate import check_inputs
from moebench.weights import MoEWeights

OP_NAME = "moebench::block_sparse_moe"
OUT_OP_NAME = "moebench::block_sparse_moe_out"


def encode_config(config: dict | None) -> str:
    if not config:
        if config is not None and not isinstance(config, dict):
            raise MoEInputError(f"config: expected a dict {{kernel: {{param: value}}}}, got {type(config).__name__}")
        return ""
    if not isinstance(config, dict):
        raise MoEInputError(f"config: expected a dict {{kernel: {{param: value}}}}, got {type(config).__name__}")
    unknown = sorted(set(config) - set(KERNELS))
    if unknown:
        raise MoEInputError(f"config: unknown kernel(s) {unknown} for block_sparse; expected some of {list(KERNELS)}")
    try:
        return json.dumps(config, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise MoEInputError(f"config: expected JSON-serialisable values, got {config!r} ({exc})") from None


def _run(x, router, w1, w2, out, top_k, activation, scoring, renormalize, config) -> Tensor:
    from moebench.blocksparse.layer import block_sparse_moe  # imports triton

    spec = spec_from_shapes(x, w1, w2, top_k, activation, scoring, renormalize)
    weights = MoEWeights(spec, router, w1, w2)
    check_inputs(x, weights, out, finite=False)
    with torch.no_grad():
        return block_sparse_moe(x, weights, out=out, config=json.loads(config) if config else None)


@torch.library.custom_op(OP_NAME, mutates_args=())
def block_sparse_moe_op(
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


@block_sparse_moe_op.register_fake
def _block_sparse_moe_fake(x, router, w1, w2, top_k, activation, scoring, renormalize, config) -> Tensor:
    return x.new_empty(x.shape)


@torch.library.custom_op(OUT_OP_NAME, mutates_args=("out",))
def block_sparse_moe_out_op(
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


@block_sparse_moe_out_op.register_fake
def _block_sparse_moe_out_fake(x, router, w1, w2, out, top_k, activation, scoring, renormalize, config) -> None:
    return None


def moe_op(x: Tensor, weights: MoEWeights, *, out: Tensor | None = None, config: dict | None = None) -> Tensor:
    """Inference through the custom op (the registry's entry point when no gradient is needed)."""
    spec = weights.spec
    args = (spec.top_k, spec.activation, spec.router.scoring, spec.router.renormalize, encode_config(config))
    if out is None:
        return torch.ops.moebench.block_sparse_moe(x, weights.router, weights.w1, weights.w2, *args)
    torch.ops.moebench.block_sparse_moe_out(x, weights.router, weights.w1, weights.w2, out, *args)
    return out
