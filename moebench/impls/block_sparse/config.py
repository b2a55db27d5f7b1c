"""Resolve the launch configs of `block_sparse`; importing this module registers its tunables.

Tunable kernels ("block_sparse", kernel), spaces and defaults in moebench.kernels.block_sparse.space:
topology, sdd, dsd (forward) and sdd_bwd, dsd_bwd, wgrad (backward only: the tuner times them as
forward + backward and checks the gradients against the fp64 reference's). Each kernel's config
comes from moebench.tuning.resolve_config (explicit > MOEBENCH_PIN_CONFIG > tuned cache > default);
tiles are checked and clamped at launch (moebench.impls.block_sparse.ops.launch_params).
"""

from __future__ import annotations

import torch

from moebench.errors import MoEInputError
from moebench.kernels.block_sparse.space import KERNELS, default_fn, space_fn
from moebench.layer_options import FEATURES as LAYER_FEATURES
from moebench.spec import MoESpec
from moebench.tuning import check_explicit_config, register_tunable, resolve_config

IMPL = "block_sparse"
FORWARD_KERNELS = ("topology", "sdd", "dsd")
BACKWARD_KERNELS = frozenset({"sdd_bwd", "dsd_bwd", "wgrad"})
# the spec options (moebench.spec.FEATURES) the kernels honour, forward and backward: all of them (routing
# options in moebench.routing.route, the rest in the kernels' epilogues and moebench.impls.common.pairs)
FEATURES: frozenset[str] = frozenset(LAYER_FEATURES)
FEATURES_NOTE = ""

# registered once, when this module is first imported (the registration and the layer import it)
for _kernel in KERNELS:
    register_tunable(
        IMPL, _kernel, space=space_fn(_kernel), default=default_fn(_kernel), backward=_kernel in BACKWARD_KERNELS
    )


def check_block(block: object) -> int:
    if isinstance(block, bool) or not isinstance(block, int) or block < 16 or block > 256 or block & (block - 1):
        raise MoEInputError(f"config['topology']['block']: expected a power of two in [16, 256], got {block!r}")
    return block


def resolve_configs(spec: MoESpec, num_tokens: int, device: torch.device, config: dict | None, *, backward: bool):
    """{kernel: config} for the forward kernels (and the backward ones when `backward`)."""
    check_explicit_config(IMPL, config)
    kernels = KERNELS if backward else FORWARD_KERNELS
    configs = {name: resolve_config(IMPL, name, spec, num_tokens, device, explicit=config) for name in kernels}
    check_block(configs["topology"].get("block"))
    return configs
