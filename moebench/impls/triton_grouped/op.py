"""triton_grouped as torch.library custom ops (moebench.impls.common.layer_ops, which gives the schema), so
torch.compile and torch.export see one opaque op:

moebench::triton_grouped_moe(x, router, w1, w2, <optional weights>, topk_weights?, topk_ids?, spec, config)
    -> Tensor [T, H]
moebench::triton_grouped_moe_out(x, router, w1, w2, out, ...) -> ()

Defining the ops needs torch alone; triton is imported when an op first runs.
"""

from __future__ import annotations

from torch import Tensor

from moebench.impls.common.layer_ops import define_layer_ops, layer_op_caller
from moebench.impls.triton_grouped.config import FEATURES, FEATURES_NOTE, IMPL
from moebench.routing import Routing
from moebench.weights import MoEWeights

NAME = "triton_grouped_moe"


def _run(x: Tensor, weights: MoEWeights, out: Tensor | None, routing: Routing | None, config: dict | None) -> Tensor:
    from moebench.impls.triton_grouped.forward import moe_forward  # imports triton

    return moe_forward(x, weights, out, config, routing)


triton_grouped_moe, triton_grouped_moe_out = define_layer_ops(
    NAME, _run, features=FEATURES, features_note=FEATURES_NOTE
)


moe_op, encode_config = layer_op_caller(NAME, IMPL)
