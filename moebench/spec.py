"""The one problem record every implementation, test, benchmark and export reads."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch

from moebench.errors import MoEInputError

Activation = Literal["swiglu", "gelu", "relu"]
Scoring = Literal["softmax", "sigmoid"]

ACTIVATIONS: tuple[str, ...] = ("swiglu", "gelu", "relu")
GATED_ACTIVATIONS: frozenset[str] = frozenset({"swiglu"})

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp64": torch.float64,
}
DTYPE_NAMES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}
_DTYPE_ALIASES = {
    "float32": "fp32",
    "float": "fp32",
    "float16": "fp16",
    "half": "fp16",
    "bfloat16": "bf16",
    "float64": "fp64",
    "double": "fp64",
}


def parse_dtype(value: str | torch.dtype) -> torch.dtype:
    """'bf16' / 'bfloat16' / torch.bfloat16 -> torch.bfloat16; anything else raises."""
    if isinstance(value, torch.dtype):
        if value not in DTYPE_NAMES:
            raise MoEInputError(f"dtype: expected one of {sorted(DTYPES)}, got {value}")
        return value
    key = _DTYPE_ALIASES.get(str(value).lower(), str(value).lower())
    if key not in DTYPES:
        raise MoEInputError(f"dtype: expected one of {sorted(DTYPES)}, got {value!r}")
    return DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    return DTYPE_NAMES[dtype]


@dataclass(frozen=True)
class RouterSpec:
    """How token scores become the k expert weights.

    softmax: probabilities over all E experts, then top-k (Mixtral, Qwen-MoE, OLMoE, gpt-oss).
    sigmoid: independent sigmoid score per expert, then top-k (DeepSeek-V3 style, without its
    group-limited selection or bias correction).
    renormalize: divide the k kept weights by their sum.
    """

    scoring: Scoring = "softmax"
    renormalize: bool = True

    def __post_init__(self) -> None:
        if self.scoring not in ("softmax", "sigmoid"):
            raise MoEInputError(f"router.scoring: expected 'softmax' or 'sigmoid', got {self.scoring!r}")


@dataclass(frozen=True)
class MoESpec:
    """One MoE layer: E experts, top-k routing, FFN hidden -> intermediate -> hidden.

    Canonical weight layout (see moebench.weights.MoEWeights):
      router [E, H];  w1 [E, G*I, H] (G=2 for swiglu: gate rows then up rows; G=1 otherwise);
      w2 [E, H, I].  Same as Hugging Face transformers v5 fused experts.
    """

    num_experts: int
    top_k: int
    hidden: int
    intermediate: int
    activation: Activation = "swiglu"
    dtype: torch.dtype = torch.bfloat16
    router: RouterSpec = RouterSpec()

    def __post_init__(self) -> None:
        for name in ("num_experts", "top_k", "hidden", "intermediate"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise MoEInputError(f"{name}: expected a positive int, got {value!r}")
        if self.top_k > self.num_experts:
            raise MoEInputError(f"top_k: expected 1 <= top_k <= num_experts={self.num_experts}, got {self.top_k}")
        if self.activation not in ACTIVATIONS:
            raise MoEInputError(f"activation: expected one of {ACTIVATIONS}, got {self.activation!r}")
        object.__setattr__(self, "dtype", parse_dtype(self.dtype))
        if not isinstance(self.router, RouterSpec):
            raise MoEInputError(f"router: expected a RouterSpec, got {type(self.router).__name__}")

    # -- derived quantities ------------------------------------------------------------------
    @property
    def gated(self) -> bool:
        return self.activation in GATED_ACTIVATIONS

    @property
    def w1_rows(self) -> int:
        """Rows of one expert's first weight: 2*I for gated activations, I otherwise."""
        return (2 if self.gated else 1) * self.intermediate

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.num_experts, self.top_k, self.hidden, self.intermediate)

    def replace(self, **changes) -> MoESpec:
        return dataclasses.replace(self, **changes)

    def with_dtype(self, dtype: str | torch.dtype) -> MoESpec:
        return self.replace(dtype=parse_dtype(dtype))

    def flops(self, num_tokens: int) -> int:
        """Useful FLOPs of the expert FFNs (router excluded): 2 * T * k * (G*I*H + H*I)."""
        return 2 * num_tokens * self.top_k * (self.w1_rows + self.intermediate) * self.hidden

    def expert_weight_bytes(self, num_active_experts: int | None = None) -> int:
        """Bytes of expert weights read once for `num_active_experts` experts (default all E)."""
        experts = self.num_experts if num_active_experts is None else num_active_experts
        per_expert = (self.w1_rows + self.intermediate) * self.hidden
        return experts * per_expert * torch.finfo(self.dtype).bits // 8

    def describe(self) -> str:
        router = f"{self.router.scoring}{'+renorm' if self.router.renormalize else ''}"
        return (
            f"E={self.num_experts} k={self.top_k} H={self.hidden} I={self.intermediate} "
            f"{self.activation} {dtype_name(self.dtype)} {router}"
        )
