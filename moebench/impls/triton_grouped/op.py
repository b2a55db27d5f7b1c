"""triton_grouped as torch.library custom ops (moebench.impls.common.layer_ops), so torch.compile and
torch.export see one opaque op:

moebench::triton_grouped_moe(x, router, w1, w2, top_k, activation, scoring, renormalize, config)
    -> Tensor [T, H]
moebench::triton_grouped_moe_out(x, router, w1, w2, out, top_k, ..., config) -> ()

Defining the ops needs torch alone; triton is imported when an op first runs.
"""

from __future__ import annotations

from torch import Tensor

from moebench.impls.common.layer_ops import call_layer_op, decode_config, define_layer_ops, spec_from_shapes
from moebench.impls.common.layer_ops import encode_config as _encode
from moebench.impls.triton_grouped.config import IMPL
from moebench.validate import check_inputs
from moebench.weights import MoEWeights

NAME = "triton_grouped_moe"


def encode_config(config: dict | None) -> str:
    return _encode(config, IMPL)


def _run(x, router, w1, w2, out, top_k, activation, scoring, renormalize, config) -> Tensor:
    from moebench.impls.triton_grouped.forward import moe_forward  # imports triton

    spec = spec_from_shapes(x, w1, w2, top_k, activation, scoring, renormalize)
    weights = MoEWeights(spec, router, w1, w2)
    check_inputs(x, weights, out, finite=False)
    return moe_forward(x, weights, out, decode_config(config))


triton_grouped_moe, triton_grouped_moe_out = define_layer_ops(NAME, _run)


def moe_op(x: Tensor, weights: MoEWeights, *, out: Tensor | None = None, config: dict | None = None) -> Tensor:
    """Call the custom op for `weights` (the registry's entry point): out variant when out is given."""
    return call_layer_op(NAME, x, weights, out, encode_config(config))
