"""The registry of MoE layer implementations.

Every implementation is a function with one signature:

    fn(x: Tensor[T, H], weights: MoEWeights, *, out: Tensor[T, H] | None = None,
       config: dict | None = None, routing: Routing | None = None) -> Tensor[T, H]

registered with `@register(...)`, which records what it needs and can do. Call it through the
registry (`get("name")(x, weights)`) so inputs are checked the same way for all of them.

routing: a precomputed moebench.routing.Routing (weights [T, k] fp32, ids [T, k] int64): the
implementation skips its router and uses it (expert parallelism, drawn routings). The registry checks
it and passes it on only when given, so an implementation registered with takes_routing=False never
sees one.

features: the options of the spec (moebench.spec.MoESpec.features(), e.g. "router.groups", "shared")
an implementation honours. A spec using any other option is refused with the reason (`features_note`)
by `spec_unsupported`, which `verify`, `bench` and `list` show: never a silently wrong result. The
default is none, so an implementation honours an option only once it says so.
quant: how an implementation runs quantised experts (spec.quant, moebench.quant): None (the default)
refuses every quantised spec with the reason, since computing on w1/w2 would silently give the
unquantised layer; otherwise a function spec -> None (runs it) or the reason it cannot.
requires: what an implementation needs (cuda, triton, grouped_mm, an optional package);
moebench.requirements says whether each holds on this machine, and why not.
Third-party packages add implementations through the entry-point group `moebench.implementations`
(each entry point names a module or callable; loading it must call `register`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from moebench.errors import MoEInputError, UnknownImplementationError
from moebench.requirements import requirement_missing
from moebench.routing import Routing
from moebench.spec import FEATURES, MoESpec, refused_features
from moebench.validate import check_inputs
from moebench.weights import MoEWeights

ENTRY_POINT_GROUP = "moebench.implementations"
ALL_FLOAT_DTYPES = frozenset({torch.float32, torch.float16, torch.bfloat16, torch.float64})
KINDS = ("loop", "padded", "grouped-gemm", "block-sparse", "peer", "deployed")

ImplFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class ImplInfo:
    """What one implementation is, needs and can do."""

    name: str
    fn: ImplFn = field(repr=False)
    kind: str
    description: str
    requires: tuple[str, ...] = ()
    dtypes: frozenset[torch.dtype] = ALL_FLOAT_DTYPES
    devices: tuple[str, ...] = ("cpu", "cuda")
    backward: bool = False
    exportable: bool = False
    graph_safe: bool = True  # no host sync: can be captured in a CUDA graph
    drops_tokens: bool = False  # documented token dropping (capacity factor)
    baseline: bool = False  # the default baseline for speedup columns
    extra_check: Callable[[str], str | None] | None = field(default=None, repr=False)
    spec_check: Callable[[MoESpec], str | None] | None = field(default=None, repr=False)
    features: frozenset[str] = frozenset()  # spec options honoured (moebench.spec.FEATURES)
    features_note: str = ""  # why the other options are refused
    takes_routing: bool = True  # accepts a precomputed routing=
    quant: Callable[[MoESpec], str | None] | None = field(default=None, repr=False)  # see the module docstring

    @property
    def refused_features(self) -> tuple[str, ...]:
        """The spec options this implementation refuses, in FEATURES order."""
        return tuple(name for name in FEATURES if name not in self.features)

    def spec_unsupported(self, spec: MoESpec, *, routing_given: bool = False) -> str | None:
        """Why this implementation cannot compute `spec` exactly (None when it can): a dtype it
        does not support, a spec option it does not honour (those that only shape the routing do
        not count when a routing is given), or a documented limit (spec_check: e.g. an activation
        an exported op lacks)."""
        if spec.dtype not in self.dtypes:
            names = sorted(str(d).replace("torch.", "") for d in self.dtypes)
            return f"dtype: {self.name} supports {names}, got {spec.dtype}"
        refused = refused_features(spec, self.features, self.name, self.features_note, routing_given=routing_given)
        if refused:
            return refused
        if spec.quant is not None:
            reason = quant_refusal(self.name, spec) if self.quant is None else self.quant(spec)
            if reason:
                return reason
        return self.spec_check(spec) if self.spec_check is not None else None

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        """(True, 'ok') or (False, why not) for running on `device` ('cpu' or 'cuda')."""
        device = torch.device(device).type
        if device not in self.devices:
            return False, f"runs on {'/'.join(self.devices)} only"
        needs = (("cuda",) if device == "cuda" else ()) + self.requires
        for requirement in needs:
            reason = requirement_missing(requirement, device)
            if reason:
                return False, reason
        if self.extra_check is not None:
            reason = self.extra_check(device)
            if reason:
                return False, reason
        return True, "ok"

    def supports(self, dtype: torch.dtype) -> bool:
        return dtype in self.dtypes

    def __call__(
        self,
        x: torch.Tensor,
        weights: MoEWeights,
        *,
        out: torch.Tensor | None = None,
        config: dict | None = None,
        routing: Routing | None = None,
        check: bool = True,
    ) -> torch.Tensor:
        """Run the layer. check=True validates inputs first (incl. a finiteness check)."""
        if routing is not None and not self.takes_routing:
            raise MoEInputError(f"routing: {self.name} computes its own routing and cannot take a precomputed one")
        if check:
            if not isinstance(weights, MoEWeights):
                raise MoEInputError(f"weights: expected MoEWeights, got {type(weights).__name__}")
            check_inputs(x, weights, out, routing=routing)
            problem = self.spec_unsupported(weights.spec, routing_given=routing is not None)
            if problem:
                raise MoEInputError(problem)
            device = x.device.type
            if device not in self.devices:
                raise MoEInputError(f"x: {self.name} runs on {'/'.join(self.devices)}, got device {device}")
            if "triton" in self.requires:  # e.g. CPU tensors without the interpreter: say so, not a driver error
                reason = requirement_missing("triton", device)
                if reason:
                    raise MoEInputError(f"x: {self.name} cannot run on {device} tensors here: {reason}")
        if routing is None:
            return self.fn(x, weights, out=out, config=config)
        return self.fn(x, weights, out=out, config=config, routing=routing)


def quant_refusal(name: str, spec: MoESpec, why: str = "it has no quantised path") -> str:
    """The reason `name` refuses quantised experts (spec.quant)."""
    return f"quant={spec.quant}: {name} does not run quantised experts ({why})"


def any_quant(spec: MoESpec) -> str | None:
    """`quant=` for implementations that run every format (by dequantising the weights up front)."""
    return None


_REGISTRY: dict[str, ImplInfo] = {}
_BUILTINS_LOADED = False
_PLUGINS_LOADED = False


def register(
    name: str,
    *,
    kind: str,
    description: str,
    requires: Iterable[str] = (),
    dtypes: Iterable[torch.dtype] = ALL_FLOAT_DTYPES,
    devices: Iterable[str] = ("cpu", "cuda"),
    backward: bool = False,
    exportable: bool = False,
    graph_safe: bool = True,
    drops_tokens: bool = False,
    baseline: bool = False,
    extra_check: Callable[[str], str | None] | None = None,
    spec_check: Callable[[MoESpec], str | None] | None = None,
    features: Iterable[str] = (),
    features_note: str = "",
    takes_routing: bool = True,
    quant: Callable[[MoESpec], str | None] | None = None,
) -> Callable[[ImplFn], ImplFn]:
    """Decorator: register `fn` under `name`. A duplicate name or an unknown feature raises ValueError."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    unknown = sorted(set(features) - set(FEATURES))
    if unknown:
        raise ValueError(f"features: unknown {unknown}; expected some of {list(FEATURES)}")

    def decorate(fn: ImplFn) -> ImplFn:
        if name in _REGISTRY:
            raise ValueError(f"implementation {name!r} is already registered (by {_REGISTRY[name].fn.__module__})")
        _REGISTRY[name] = ImplInfo(
            name=name,
            fn=fn,
            kind=kind,
            description=description,
            requires=tuple(requires),
            dtypes=frozenset(dtypes),
            devices=tuple(devices),
            backward=backward,
            exportable=exportable,
            graph_safe=graph_safe,
            drops_tokens=drops_tokens,
            baseline=baseline,
            extra_check=extra_check,
            spec_check=spec_check,
            features=frozenset(features),
            features_note=features_note,
            takes_routing=takes_routing,
            quant=quant,
        )
        return fn

    return decorate


def unregister(name: str) -> None:
    """Remove an implementation (tests use this to clean up deliberately broken ones)."""
    _REGISTRY.pop(name, None)


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        importlib.import_module("moebench.impls")


def load_plugins() -> list[str]:
    """Load third-party implementations from the entry-point group; returns the names loaded."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return []
    _PLUGINS_LOADED = True
    from importlib.metadata import entry_points

    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        if callable(obj) and not isinstance(obj, type(importlib)):
            obj()
        loaded.append(ep.name)
    return loaded


def all_impls() -> list[ImplInfo]:
    _load_builtins()
    load_plugins()
    return list(_REGISTRY.values())


def names() -> list[str]:
    return [info.name for info in all_impls()]


def get(name: str) -> ImplInfo:
    _load_builtins()
    load_plugins()
    if name not in _REGISTRY:
        raise UnknownImplementationError(f"impl: unknown implementation {name!r}; registered: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def select(names_: Iterable[str] | None, device: str, dtype: torch.dtype | None = None) -> list[ImplInfo]:
    """The named implementations (all if None) that are available on `device` (and support dtype).

    Named implementations that are unknown raise; named ones that are unavailable are kept so the
    caller can report why (use `available()`); unnamed unavailable ones are left out.
    """
    if names_:
        return [get(n) for n in names_]
    chosen = []
    for info in all_impls():
        if info.available(device)[0] and (dtype is None or info.supports(dtype)):
            chosen.append(info)
    return chosen
