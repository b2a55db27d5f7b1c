"""One MoE layer as a pair of torch.library custom ops, so torch.compile and torch.export see one op.

define_layer_ops("name", run) registers
    moebench::name(x, router, w1, w2, top_k, activation, scoring, renormalize, config) -> Tensor [T, H]
        (functional; fake impl: an empty [T, H] like x)
    moebench::name_out(x, router, w1, w2, out, top_k, activation, scoring, renormalize, config) -> ()
        (writes `out`, declared as mutated)
with run(x, router, w1, w2, out | None, top_k, activation, scoring, renormalize, config) doing the
work. E, H and I come from the weight shapes (spec_from_shapes), the dtype from x; `config` is the
implementation's {kernel: {param: value}} dict as a JSON string ("" for none), because custom ops
take only plain types. Used by triton_grouped (moebench.impls.triton_grouped.op) and block_sparse inference
(moebench.impls.block_sparse.op).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import torch
from torch import Tensor

from moebench.errors import MoEInputError
from moebench.spec import MoESpec, RouterSpec
from moebench.tuning import check_explicit_config
from moebench.weights import MoEWeights


def spec_from_shapes(
    x: Tensor, w1: Tensor, w2: Tensor, top_k: int, activation: str, scoring: str, renormalize: bool
) -> MoESpec:
    if w1.dim() != 3 or w2.dim() != 3:
        raise MoEInputError(f"w1, w2: expected 3-D [E, G*I, H] and [E, H, I], got {list(w1.shape)}, {list(w2.shape)}")
    num_experts, _, hidden = w1.shape
    return MoESpec(num_experts, top_k, hidden, w2.shape[2], activation, x.dtype, RouterSpec(scoring, renormalize))


def encode_config(config: dict | None, impl: str) -> str:
    """The config as the ops' JSON string, after checking it names only `impl`'s kernels."""
    check_explicit_config(impl, config)
    if not config:
        return ""
    try:
        return json.dumps(config, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise MoEInputError(f"config: expected JSON-serialisable values, got {config!r} ({exc})") from None


def decode_config(text: str) -> dict | None:
    return json.loads(text) if text else None


def define_layer_ops(name: str, run: Callable[..., Tensor]) -> tuple:
    """Register moebench::<name> and moebench::<name>_out around `run`; returns both ops."""

    @torch.library.custom_op(f"moebench::{name}", mutates_args=())
    def functional(
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
        return run(x, router, w1, w2, None, top_k, activation, scoring, renormalize, config)

    @functional.register_fake
    def _functional_fake(x, router, w1, w2, top_k, activation, scoring, renormalize, config) -> Tensor:
        return x.new_empty(x.shape)

    @torch.library.custom_op(f"moebench::{name}_out", mutates_args=("out",))
    def with_out(
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
        run(x, router, w1, w2, out, top_k, activation, scoring, renormalize, config)

    @with_out.register_fake
    def _with_out_fake(x, router, w1, w2, out, top_k, activation, scoring, renormalize, config) -> None:
        return None

    return functional, with_out


def call_layer_op(name: str, x: Tensor, weights: MoEWeights, out: Tensor | None, config_text: str) -> Tensor:
    """Call moebench::<name> (or its _out variant when out is given) for `weights`."""
    spec = weights.spec
    args = (spec.top_k, spec.activation, spec.router.scoring, spec.router.renormalize, config_text)
    if out is None:
        return getattr(torch.ops.moebench, name)(x, weights.router, weights.w1, weights.w2, *args)
    getattr(torch.ops.moebench, f"{name}_out")(x, weights.router, weights.w1, weights.w2, out, *args)
    return out
