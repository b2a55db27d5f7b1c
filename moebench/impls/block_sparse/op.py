"""block_sparse inference as torch.library custom ops (moebench.impls.common.layer_ops, which gives the
schema), so torch.compile and torch.export see one opaque op:

moebench::block_sparse_moe(x, router, w1, w2, <optional weights>, topk_weights?, topk_ids?, spec, config)
    -> Tensor [T, H]
moebench::block_sparse_moe_out(x, router, w1, w2, out, ...) -> ()

Training does not go through these ops: its backward needs the blocks the forward saves, which
the autograd.Function (moebench.impls.block_sparse.autograd) keeps and an opaque op could not hand over.
"""

from __future__ import annotations

import torch
from torch import Tensor

from moebench.impls.block_sparse.config import FEATURES, FEATURES_NOTE, IMPL  # importing it registers the tunables
from moebench.impls.common.layer_ops import define_layer_ops, layer_op_caller
from moebench.routing import Routing
from moebench.weights import MoEWeights

NAME = "block_sparse_moe"


def _run(x: Tensor, weights: MoEWeights, out: Tensor | None, routing: Routing | None, config: dict | None) -> Tensor:
    from moebench.impls.block_sparse.layer import block_sparse_moe  # imports triton

    with torch.no_grad():
        return block_sparse_moe(x, weights, out=out, config=config, routing=routing)


block_sparse_moe_op, block_sparse_moe_out_op = define_layer_ops(
    NAME, _run, features=FEATURES, features_note=FEATURES_NOTE
)


moe_op, encode_config = layer_op_caller(NAME, IMPL)
