"""block_sparse: MegaBlocks-style dropless MoE with our own Triton block-sparse kernels.

The expert FFNs become block-sparse matmuls over the expert-sorted (token, slot) pairs: each
expert's rows are padded to the block size only (at most B - 1 rows per expert), no token is
dropped, no host sync. Forward and backward (moebench.impls.block_sparse.autograd). Config keys:
"topology" ({"block": 128}) and the kernels' tiles (see moebench.kernels.block_sparse.space).
"""

from __future__ import annotations

import torch

from moebench.impls.block_sparse.config import FEATURES, FEATURES_NOTE, IMPL  # importing it registers the tunables
from moebench.impls.block_sparse.op import moe_op
from moebench.registry import register
from moebench.weights import MoEWeights


@register(
    IMPL,
    kind="block-sparse",
    description="MegaBlocks-style block-sparse SDD/DSD Triton kernels, dropless, forward + backward",
    requires=("triton",),
    dtypes=(torch.float32, torch.float16, torch.bfloat16),
    devices=("cpu", "cuda"),
    backward=True,
    graph_safe=True,
    features=FEATURES,
    features_note=FEATURES_NOTE,
)
def block_sparse(x: torch.Tensor, weights: MoEWeights, *, out=None, config=None, routing=None) -> torch.Tensor:
    """Inference: one custom op (moebench::block_sparse_moe[_out], opaque to torch.compile/export);
    training (an input needs a gradient): the autograd.Function."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, *weights.parameters())):
        from moebench.impls.block_sparse.layer import block_sparse_moe  # imports triton

        return block_sparse_moe(x, weights, out=out, config=config, routing=routing)
    return moe_op(x, weights, out=out, config=config, routing=routing)
