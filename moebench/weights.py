"""Canonical weights of one MoE layer, seeded generators of weights and inputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from moebench.errors import MoEInputError
from moebench.spec import MoESpec


@dataclass(eq=False)
class MoEWeights:
    """The canonical layout (same as Hugging Face transformers v5 fused experts).

    router: [E, H]          logits = x @ router.T (computed in fp32 by every implementation)
    w1:     [E, G*I, H]     G=2 for swiglu (rows [0, I) gate, rows [I, 2I) up), G=1 otherwise
    w2:     [E, H, I]       down projection
    All three are in spec.dtype, on one device.
    """

    spec: MoESpec
    router: torch.Tensor
    w1: torch.Tensor
    w2: torch.Tensor
    # per-implementation derived layouts (transposes, packed copies); keyed by the implementation
    _derived: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        s = self.spec
        expected = {
            "router": (s.num_experts, s.hidden),
            "w1": (s.num_experts, s.w1_rows, s.hidden),
            "w2": (s.num_experts, s.hidden, s.intermediate),
        }
        for name, shape in expected.items():
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor):
                raise MoEInputError(f"{name}: expected a torch.Tensor of shape {list(shape)}, got {type(t).__name__}")
            if tuple(t.shape) != shape:
                raise MoEInputError(f"{name}: expected shape {list(shape)} for {s.describe()}, got {list(t.shape)}")
            if t.dtype != s.dtype:
                raise MoEInputError(f"{name}: expected dtype {s.dtype}, got {t.dtype}")
        devices = {self.router.device, self.w1.device, self.w2.device}
        if len(devices) != 1:
            raise MoEInputError(f"weights: router, w1 and w2 must be on one device, got {sorted(map(str, devices))}")

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

    def derived(self, key: str, make: Callable[[MoEWeights], Any]) -> Any:
        """A cached derived layout (e.g. a transposed copy) so benchmarks do not time re-layouts."""
        if key not in self._derived:
            self._derived[key] = make(self)
        return self._derived[key]

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> MoEWeights:
        spec = self.spec if dtype is None else self.spec.with_dtype(dtype)
        return MoEWeights(
            spec,
            self.router.to(device=device, dtype=spec.dtype),
            self.w1.to(device=device, dtype=spec.dtype),
            self.w2.to(device=device, dtype=spec.dtype),
        )

    def parameters(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (self.router, self.w1, self.w2)


def _generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise MoEInputError(f"device: {str(device)!r} was asked for but this machine has no CUDA GPU (use 'cpu')")
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def random_weights(spec: MoESpec, device: str | torch.device = "cpu", seed: int = 0) -> MoEWeights:
    """N(0,1) weights scaled by fan-in^-0.5, drawn on `device` in fp32 one expert at a time.

    The same seed gives the same weights on the same kind of device (CPU and CUDA generators
    differ). Drawing per expert keeps the fp32 scratch to one expert (deepseek-v3's weights would
    be 45 GB in fp32 at once) and drawing on the GPU avoids a slow host-side fill.
    """
    device = torch.device(device)
    g = _generator(seed, device)
    e, h, i = spec.num_experts, spec.hidden, spec.intermediate

    def draw(*shape: int, fan_in: int) -> torch.Tensor:
        out = torch.empty(shape, dtype=spec.dtype, device=device)
        for chunk in out.view(-1, *shape[-2:]) if len(shape) == 3 else [out]:
            chunk.copy_(torch.randn(chunk.shape, generator=g, dtype=torch.float32, device=device).mul_(fan_in**-0.5))
        return out

    return MoEWeights(spec, draw(e, h, fan_in=h), draw(e, spec.w1_rows, h, fan_in=h), draw(e, h, i, fan_in=i))


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
    tokens, one pushed by -30 by none. Used by the parity gate's edge cases.
    """
    spec = weights.spec
    if len(always) > spec.top_k:
        raise MoEInputError(f"always: at most top_k={spec.top_k} experts, got {len(always)}")
    if spec.num_experts - len(never) < spec.top_k:
        raise MoEInputError(f"never: leaves fewer than top_k={spec.top_k} experts")
    router = weights.router.clone()
    router[:, 0] = 0
    for e in always:
        router[e, 0] = strength
    for e in never:
        router[e, 0] = -strength
    x = x.clone()
    if x.shape[0]:
        x[:, 0] = 1
    return MoEWeights(spec, router, weights.w1, weights.w2), x
