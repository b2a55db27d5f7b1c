"""One MoE layer as a pair of torch.library custom ops, so torch.compile and torch.export see one op.

define_layer_ops("name", run, features=..., features_note=...) registers

    moebench::name(Tensor x, Tensor router, Tensor w1, Tensor w2,
                   Tensor? router_bias, Tensor? selection_bias, Tensor? b1, Tensor? b2,
                   Tensor? shared_w1, Tensor? shared_w2, Tensor? shared_gate,
                   Tensor? topk_weights, Tensor? topk_ids, str spec, str config) -> Tensor
        (functional; fake impl: an empty [T, H] like x)
    moebench::name_out(Tensor x, Tensor router, Tensor w1, Tensor w2, Tensor(a!) out, <the same rest>) -> ()
        (writes `out`, declared as mutated)

`spec` is MoESpec.to_json() (every option of the layer; E, H, I and the dtype too, checked against the
tensors), the optional tensors are the MoEWeights fields of the same names (None when the spec has no such
option), topk_weights / topk_ids a precomputed Routing (both None: the op routes), `config` the
implementation's {kernel: {param: value}} dict as JSON ("" for none): custom ops take only plain types.

The op rebuilds MoEWeights and the Routing, checks them (moebench.validate, no host sync), refuses the spec
options the implementation does not list in `features` (the same message as the registry), and calls
    run(x, weights: MoEWeights, out: Tensor | None, routing: Routing | None, config: dict | None) -> Tensor
so an implementation reads weights.b1, weights.shared_w1, ... and never this schema. `layer_op_args` builds
the argument tuple. Used by triton_grouped (moebench.impls.triton_grouped.op) and block_sparse inference
(moebench.impls.block_sparse.op).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import torch
from torch import Tensor

from moebench.errors import MoEInputError
from moebench.routing import Routing
from moebench.spec import refused_features, spec_from_dict
from moebench.tuning import check_explicit_config
from moebench.validate import check_inputs
from moebench.weight_layout import TENSOR_NAMES
from moebench.weights import MoEWeights

OPTIONAL = TENSOR_NAMES[3:]  # router_bias, selection_bias, b1, b2, shared_w1, shared_w2, shared_gate
_REST = ", ".join(f"Tensor? {name}" for name in (*OPTIONAL, "topk_weights", "topk_ids")) + ", str spec, str config"
SCHEMA = f"(Tensor x, Tensor router, Tensor w1, Tensor w2, {_REST}) -> Tensor"
OUT_SCHEMA = f"(Tensor x, Tensor router, Tensor w1, Tensor w2, Tensor(a!) out, {_REST}) -> ()"

Run = Callable[[Tensor, MoEWeights, "Tensor | None", "Routing | None", "dict | None"], Tensor]


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


def layer_op_args(
    x: Tensor, weights: MoEWeights, config_text: str = "", routing: Routing | None = None, out: Tensor | None = None
) -> tuple:
    """The arguments of moebench::<name> for these inputs (of <name>_out when `out` is given)."""
    head = (x, weights.router, weights.w1, weights.w2) + (() if out is None else (out,))
    topk = (None, None) if routing is None else (routing.weights, routing.ids)
    return (*head, *(getattr(weights, n) for n in OPTIONAL), *topk, weights.spec.to_json(), config_text)


def define_layer_ops(name: str, run: Run, *, features: frozenset[str], features_note: str) -> tuple:
    """Register moebench::<name> and moebench::<name>_out around `run`; returns both ops."""

    def unpack(args: tuple, with_out: bool) -> tuple:
        x, router, w1, w2, *rest = args
        out = rest.pop(0) if with_out else None
        *optional, topk_weights, topk_ids, spec_text, config = rest
        spec = spec_from_dict(spec_text)
        weights = MoEWeights(spec, router, w1, w2, **dict(zip(OPTIONAL, optional)))
        if (topk_weights is None) != (topk_ids is None):
            raise MoEInputError("routing: expected topk_weights and topk_ids both given or both None")
        routing = None if topk_ids is None else Routing(topk_weights, topk_ids)
        check_inputs(x, weights, out, routing=routing, finite=False)
        reason = refused_features(spec, features, name, features_note, routing_given=routing is not None)
        if reason:
            raise MoEInputError(reason)
        return x, weights, out, routing, decode_config(config)

    def functional(*args) -> Tensor:
        return run(*unpack(args, with_out=False))

    def with_out(*args) -> None:
        run(*unpack(args, with_out=True))

    functional_op = torch.library.custom_op(f"moebench::{name}", functional, mutates_args=(), schema=SCHEMA)
    functional_op.register_fake(lambda x, *rest: x.new_empty(x.shape))
    out_op = torch.library.custom_op(f"moebench::{name}_out", with_out, mutates_args=("out",), schema=OUT_SCHEMA)
    out_op.register_fake(lambda *args: None)
    return functional_op, out_op


def call_layer_op(
    name: str, x: Tensor, weights: MoEWeights, out: Tensor | None, config_text: str, routing: Routing | None = None
) -> Tensor:
    """Call moebench::<name> (or its _out variant when out is given) for `weights`."""
    if out is None:
        return getattr(torch.ops.moebench, name)(*layer_op_args(x, weights, config_text, routing))
    getattr(torch.ops.moebench, f"{name}_out")(*layer_op_args(x, weights, config_text, routing, out))
    return out


def layer_op_caller(name: str, impl: str) -> tuple[Callable, Callable]:
    """(moe_op, encode_config) of an implementation whose layer is moebench::<name>: moe_op(x, weights, *, out,
    config, routing) is the registry's entry point (the out variant when out is given); encode_config(config)
    checks the config names only `impl`'s kernels and gives the ops' JSON string."""

    def encode(config: dict | None) -> str:
        return encode_config(config, impl)

    def moe_op(
        x: Tensor,
        weights: MoEWeights,
        *,
        out: Tensor | None = None,
        config: dict | None = None,
        routing: Routing | None = None,
    ) -> Tensor:
        return call_layer_op(name, x, weights, out, encode(config), routing)

    return moe_op, encode
