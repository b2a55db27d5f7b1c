"""Canonical weights of one MoE layer, and seeded generators of weights and inputs.

MoEWeights(spec, router, w1, w2, router_bias=None, selection_bias=None, b1=None, b2=None,
           shared_w1=None, shared_w2=None, shared_gate=None, quant=None)
Every tensor the spec asks for must be there and every other one None (moebench.weight_layout lists them
with `tensor_layout(spec)` and holds the record to them with `check_tensors`);
`quant` (moebench.quant.QuantizedExperts) holds the routed experts in the format spec.quant, exactly when
spec.quant is set; w1/w2 are then the unquantised weights it was made from (what "error against the
unquantised layer" compares with). `quantized(weights)` makes it from w1/w2.
`parameters()` / `parameter_names()` are the tensors a gradient flows to, `with_tensors(...)` swaps some.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from moebench.errors import MoEInputError
from moebench.quant.experts import QuantizedExperts, QuantizedTensor, quantize_experts
from moebench.quant.formats import get_format
from moebench.spec import MoESpec, RouterSpec, SharedSpec
from moebench.weight_layout import TENSOR_NAMES, check_tensors, tensor_layout


@dataclass(eq=False)
class MoEWeights:
    """The canonical layout (same as Hugging Face transformers v5 fused experts) plus optional tensors.

    router:   [E, H]        logits = x @ router.T (+ router_bias), computed in fp32 by every implementation
    w1:       [E, G*I, H]   G=2 for swiglu (rows [0, I) gate, rows [I, 2I) up), G=1 otherwise
    w2:       [E, H, I]     down projection
    Optional ones (see tensor_layout) exactly when the spec has the option. One device.
    """

    spec: MoESpec
    router: torch.Tensor
    w1: torch.Tensor
    w2: torch.Tensor
    router_bias: torch.Tensor | None = None
    selection_bias: torch.Tensor | None = None
    b1: torch.Tensor | None = None
    b2: torch.Tensor | None = None
    shared_w1: torch.Tensor | None = None
    shared_w2: torch.Tensor | None = None
    shared_gate: torch.Tensor | None = None
    quant: QuantizedExperts | None = None  # the routed experts in spec.quant's format (exactly when spec.quant)
    # per-implementation derived layouts (transposes, packed copies); keyed by the implementation
    _derived: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        check_tensors(self.spec, {name: getattr(self, name) for name in TENSOR_NAMES}, self.quant)

    def unquantized(self) -> MoEWeights:
        """The same layer with unquantised experts (w1/w2 as they are): the layer quantisation approximates."""
        return MoEWeights(self.spec.replace(quant=None), **self.tensors())

    def dequantized(self, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(w1, w2) the experts compute with: dequantised from `quant` (in `dtype`, default the spec's) when
        quantised, else w1/w2 themselves."""
        if self.quant is None:
            return self.w1, self.w2
        return self.quant.dequantize(dtype or self.spec.dtype)

    @property
    def device(self) -> torch.device:
        return self.w1.device

    @property
    def w_gate(self) -> torch.Tensor:
        """[E, I, H] gate rows of w1 (the whole w1 for non-gated activations)."""
        return self.w1[:, : self.spec.intermediate]

    @property
    def w_up(self) -> torch.Tensor:
        """[E, I, H] up rows of w1; only for gated activations."""
        if not self.spec.gated:
            raise MoEInputError(f"w_up: activation {self.spec.activation!r} has no up projection")
        return self.w1[:, self.spec.intermediate :]

    def tensors(self) -> dict[str, torch.Tensor]:
        """name -> tensor for every tensor present, in TENSOR_NAMES order."""
        return {name: getattr(self, name) for name in TENSOR_NAMES if getattr(self, name) is not None}

    def parameter_names(self) -> tuple[str, ...]:
        """Names of the tensors a gradient flows to: all present ones but selection_bias (it only picks)."""
        return tuple(name for name in self.tensors() if name != "selection_bias")

    def parameters(self) -> tuple[torch.Tensor, ...]:
        """The tensors of parameter_names(), in that order (router, w1, w2 first)."""
        return tuple(getattr(self, name) for name in self.parameter_names())

    def with_tensors(self, **tensors: torch.Tensor | None) -> MoEWeights:
        """A new MoEWeights (no cached derived layouts) with the named tensors replaced."""
        unknown = sorted(set(tensors) - set(TENSOR_NAMES))
        if unknown:
            raise MoEInputError(f"tensors: unknown name(s) {unknown}; expected some of {list(TENSOR_NAMES)}")
        return _with_quant(MoEWeights, self.spec, {**self.tensors(), **tensors}, self.quant, tensors)

    def with_parameters(self, values: Sequence[torch.Tensor]) -> MoEWeights:
        """A new MoEWeights with parameters() replaced by `values` (same order), e.g. autograd leaves; in
        their dtype when it differs (fp64 copies for the reference), selection_bias kept."""
        names = self.parameter_names()
        if len(values) != len(names):
            raise MoEInputError(f"values: expected {len(names)} tensors ({', '.join(names)}), got {len(values)}")
        dtype = values[0].dtype
        spec = self.spec if dtype == self.spec.dtype else self.spec.with_dtype(dtype)
        changed = dict(zip(names, values))
        return _with_quant(MoEWeights, spec, {**self.tensors(), **changed}, self.quant, changed)

    def derived(self, key: str, make: Callable[[MoEWeights], Any]) -> Any:
        """A cached derived layout (e.g. a transposed copy) so benchmarks do not time re-layouts."""
        if key not in self._derived:
            self._derived[key] = make(self)
        return self._derived[key]

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> MoEWeights:
        """All tensors on `device`, in `dtype` (selection_bias stays fp32)."""
        spec = self.spec if dtype is None else self.spec.with_dtype(dtype)
        layout = tensor_layout(spec)
        moved = {name: t.to(device=device, dtype=layout[name][1]) for name, t in self.tensors().items()}
        quant = self.quant if self.quant is None or device is None else self.quant.to(device)
        return MoEWeights(spec, **moved, quant=quant)

    def experts_subset(self, experts: torch.Tensor, *, top_k: int = 1) -> MoEWeights:
        """The routed experts `experts` (int64 ids, in that order, repeats allowed) as a layer of their own
        with top-k `top_k`, for a problem whose routing is given (expert parallelism): expert tensors and
        router rows sliced; the router options that only shape the routing reset to the plain router (only
        weight_on is kept) and their tensors dropped; shared experts dropped (they are not per routed
        expert: whoever splits the layer runs them once)."""
        spec = self.spec
        router = RouterSpec(weight_on=spec.router.weight_on)
        local = spec.replace(num_experts=int(experts.numel()), top_k=top_k, router=router, shared=SharedSpec())
        sliced = {n: t[experts] for n, t in self.tensors().items() if n in tensor_layout(local)}
        return MoEWeights(local, **sliced, quant=None if self.quant is None else self.quant.select(experts))


def _with_quant(cls, spec: MoESpec, tensors: dict, quant: QuantizedExperts | None, changed: dict) -> MoEWeights:
    """MoEWeights with `quant` kept, or made again from the new w1/w2 when `changed` replaces either."""
    if spec.quant is not None and ("w1" in changed or "w2" in changed):
        quant = quantize_experts(tensors["w1"], tensors["w2"], spec.quant)
    return cls(spec, **tensors, quant=quant)


def quantized(weights: MoEWeights, fmt: str) -> MoEWeights:
    """`weights` with their routed experts quantised to `fmt` (spec.quant = fmt); w1/w2 kept as they are."""
    spec = weights.spec.replace(quant=fmt)
    return MoEWeights(spec, **weights.tensors(), quant=quantize_experts(weights.w1, weights.w2, spec.quant))


def empty_weights(spec: MoESpec, device: str | torch.device = "cpu", *, requires_grad: bool = False) -> MoEWeights:
    """Uninitialised tensors of the right shapes (meta device: no memory), e.g. to record kernel launches."""
    tensors = {
        name: torch.empty(shape, dtype=dtype, device=device, requires_grad=requires_grad and name != "selection_bias")
        for name, (shape, dtype) in tensor_layout(spec).items()
    }
    quant = None
    if spec.quant is not None:
        fmt = get_format(spec.quant)
        parts = {}
        for name in ("w1", "w2"):
            shape = tuple(tensors[name].shape)
            empty = {
                k: None if v is None else torch.empty(v[0], dtype=v[1], device=device)
                for k, v in fmt.layout(shape).items()
            }
            parts[name] = QuantizedTensor(fmt, shape, **empty)
        quant = QuantizedExperts(fmt, **parts)
    return MoEWeights(spec, **tensors, quant=quant)


def _generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise MoEInputError(f"device: {str(device)!r} was asked for but this machine has no CUDA GPU (use 'cpu')")
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def _selection_bias_scale(spec: MoESpec) -> float:
    """A selection bias about the size of the gaps between neighbouring choice scores, so it changes picks:
    logits ~N(0, 1) (softmax_after_topk), softmax probabilities ~1/E, sigmoid scores ~0.5 +- 0.2."""
    if spec.router.softmax_after_topk:
        return 0.5
    return 1.0 / spec.num_experts if spec.router.scoring == "softmax" else 0.1


def random_weights(spec: MoESpec, device: str | torch.device = "cpu", seed: int = 0) -> MoEWeights:
    """N(0,1) weights scaled by fan-in^-0.5, drawn on `device` in fp32 one expert at a time.

    The same seed gives the same weights on the same kind of device (CPU and CUDA generators
    differ). Drawing per expert keeps the fp32 scratch to one expert (deepseek-v3's weights would
    be 45 GB in fp32 at once) and drawing on the GPU avoids a slow host-side fill. router, w1, w2 are
    drawn first (the same values as for the plain layer of that shape); then, when the spec has them,
    biases (small but not zero: router bias N(0, 0.5^2), b1 N(0, 0.2^2), b2 N(0, 0.1^2)), a selection
    bias of the size that changes choices (see _selection_bias_scale), and shared experts and gate.
    A quantised spec quantises the drawn w1/w2 (`quantized`), keeping them as the unquantised layer.
    """
    device = torch.device(device)
    g = _generator(seed, device)
    h, i, i_s = spec.hidden, spec.intermediate, spec.shared.intermediate

    def draw(name: str, scale: float) -> torch.Tensor:
        shape, dtype = layout[name]
        out = torch.empty(shape, dtype=dtype, device=device)
        for chunk in out.view(-1, *shape[-2:]) if len(shape) == 3 else [out]:
            chunk.copy_(torch.randn(chunk.shape, generator=g, dtype=torch.float32, device=device).mul_(scale))
        return out

    layout = tensor_layout(spec)
    scales = {
        "router": h**-0.5,
        "w1": h**-0.5,
        "w2": i**-0.5,
        "router_bias": 0.5,
        "selection_bias": _selection_bias_scale(spec),
        "b1": 0.2,
        "b2": 0.1,
        "shared_w1": h**-0.5,
        "shared_w2": max(i_s, 1) ** -0.5,
        "shared_gate": h**-0.5,
    }
    plain = MoEWeights(spec.replace(quant=None), **{name: draw(name, scales[name]) for name in layout})
    return plain if spec.quant is None else quantized(plain, spec.quant)


def random_inputs(spec: MoESpec, num_tokens: int, device: str | torch.device = "cpu", seed: int = 1) -> torch.Tensor:
    """x: [T, H] with N(0,1) entries in spec.dtype."""
    if num_tokens < 0:
        raise MoEInputError(f"num_tokens: expected >= 0, got {num_tokens}")
    g = _generator(seed, device)
    x = torch.randn(num_tokens, spec.hidden, generator=g, dtype=torch.float32, device=device)
    return x.to(spec.dtype)


def steer_routing(
    weights: MoEWeights,
    x: torch.Tensor,
    *,
    always: tuple[int, ...] = (),
    never: tuple[int, ...] = (),
    strength: float = 30.0,
) -> tuple[MoEWeights, torch.Tensor]:
    """Force experts into (`always`) or out of (`never`) every token's top-k.

    Feature 0 of every token is set to 1 and router column 0 to +strength / -strength for the
    listed experts, so their logit moves by that much: an expert pushed by +30 is picked by all
    tokens, one pushed by -30 by none. A sigmoid score cannot move by 30, so when the spec has a
    selection bias it moves by the same amount too (which also wins the expert's group under
    group-limited routing). Used by the parity gate's edge cases.
    """
    spec = weights.spec
    if len(always) > spec.top_k:
        raise MoEInputError(f"always: at most top_k={spec.top_k} experts, got {len(always)}")
    if spec.num_experts - len(never) < spec.top_k:
        raise MoEInputError(f"never: leaves fewer than top_k={spec.top_k} experts")
    router = weights.router.clone()
    router[:, 0] = 0
    changed = {"router": router}
    if weights.selection_bias is not None:
        changed["selection_bias"] = weights.selection_bias.clone()
    for experts, sign in ((always, 1.0), (never, -1.0)):
        for e in experts:
            router[e, 0] = sign * strength
            if "selection_bias" in changed:
                changed["selection_bias"][e] += sign * strength
    x = x.clone()
    if x.shape[0]:
        x[:, 0] = 1
    return weights.with_tensors(**changed), x
