"""Registers the block-sparse kernels' tuning spaces (idempotent: the registry entry and the
layer both call it, so either import order works)."""

from __future__ import annotations

from moebench.kernels.bsr_space import KERNELS, default_fn, space_fn
from moebench.tuning import register_tunable, tunables

IMPL_NAME = "block_sparse"
# kernels that run only in the backward pass: the tuner times them as forward + backward and checks
# the gradients against the fp64 reference's
BACKWARD_KERNELS = frozenset({"sdd_bwd", "dsd_bwd", "wgrad"})


def ensure_registered() -> None:
    known = {t.kernel for t in tunables(IMPL_NAME)}
    for kernel in KERNELS:
        if kernel not in known:
            register_tunable(
                IMPL_NAME,
                kernel,
                space=space_fn(kernel),
                default=default_fn(kernel),
                backward=kernel in BACKWARD_KERNELS,
            )
