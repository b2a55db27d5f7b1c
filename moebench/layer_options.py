"""The options of one MoE layer beyond its shape: how it routes, what its experts compute, its shared experts.

Three frozen records, held by moebench.spec.MoESpec (`spec.router`, `spec.expert`, `spec.shared`). Each
checks its own fields here; checks that need the whole layer (E, k, the activation) are in MoESpec.
Defaults state the plain layer (Mixtral): softmax, top-k, renormalised, SwiGLU, no biases, no shared expert.

Published definitions these options reproduce (transformers 5.x modeling files, read for this module):
  DeepseekV3TopkRouter (models/deepseek_v3/modeling_deepseek_v3.py), same in Glm4MoeTopkRouter:
      sigmoid scores; `e_score_correction_bias` added for the choice only; group score = sum of the
      group's top-2 biased scores; experts outside the best `topk_group` of `n_group` groups masked;
      top-k; weights = unbiased scores of the chosen experts, renormalised, times routed_scaling_factor.
  GptOssTopKRouter / GptOssExperts (models/gpt_oss/modeling_gpt_oss.py): Linear(H, E, bias=True) logits,
      top-k on the logits, softmax over the k chosen logits; experts with biases and the clamped SwiGLU
      (gate clamped above at limit, up to [-limit, limit], (up + 1) * gate * sigmoid(alpha * gate)).
  Llama4Router / Llama4TextMoe (models/llama4/modeling_llama4.py): top-k on the logits, sigmoid of the
      chosen logits, no renormalisation; the weight scales the expert's INPUT; plus a shared expert.
  Qwen2MoeSparseMoeBlock (models/qwen2_moe), Qwen3NextSparseMoeBlock (models/qwen3_next): a shared
      expert whose output is scaled per token by sigmoid(x . shared_expert_gate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

from moebench.errors import MoEInputError

Scoring = Literal["softmax", "sigmoid"]
WeightOn = Literal["output", "input"]

# every option a spec can use beyond the plain layer, named by its field (moebench.spec.MoESpec.features);
# implementations declare which of these they honour (moebench.registry)
FEATURES: tuple[str, ...] = (
    "router.bias",
    "router.selection_bias",
    "router.groups",
    "router.softmax_after_topk",
    "router.scaling",
    "router.weight_on",
    "expert.bias",
    "expert.swiglu_alpha",
    "expert.swiglu_limit",
    "expert.swiglu_up_offset",
    "shared",
    "shared.gated",
)

# the options that only shape the routing: an implementation given a precomputed routing needs none of them
ROUTING_ONLY: frozenset[str] = frozenset(
    {"router.bias", "router.selection_bias", "router.groups", "router.softmax_after_topk", "router.scaling"}
)


def check_bool(where: str, value) -> None:
    if not isinstance(value, bool):
        raise MoEInputError(f"{where}: expected True or False, got {value!r}")


def check_int(where: str, value, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise MoEInputError(f"{where}: expected an int >= {low}, got {value!r}")


def as_float(where: str, value, *, positive: bool = False) -> float:
    """value as a finite float (ints accepted), else MoEInputError naming `where`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MoEInputError(f"{where}: expected a finite number, got {value!r}")
    if positive and value <= 0:
        raise MoEInputError(f"{where}: expected a number > 0, got {value!r}")
    return float(value)


def _set(record, name: str, value) -> None:
    object.__setattr__(record, name, value)


@dataclass(frozen=True)
class RouterSpec:
    """How a token's router logits become its k (expert, weight) pairs.

    scoring             "softmax" over all E experts, or an independent "sigmoid" per expert.
    renormalize         divide the k kept weights by their sum.
    softmax_after_topk  gpt-oss: top-k on the raw logits, then softmax over the k chosen logits only (the
                        weights already sum to 1, so `renormalize` must be False). Softmax scoring only.
                        Equal in exact arithmetic to softmax + renormalize; stated as published.
    bias                a router bias [E] added to the logits (gpt-oss: Linear(H, E, bias=True)).
    selection_bias      DeepSeek's e_score_correction_bias [E] (fp32), added to the scores for the CHOICE
                        of experts only; the weights come from the unbiased scores.
    groups, topk_groups group-limited top-k (n_group, topk_group): the E experts form `groups` equal groups;
                        a group's score is the sum of its top-2 choice scores (DeepSeek-V3); only experts of
                        the best `topk_groups` groups can be chosen. groups == topk_groups: no limit.
    scaling             routed_scaling_factor: multiplies the final weights (after renormalisation).
    weight_on           "output": y = sum_k w_k * FFN_k(x) (default); "input" (Llama-4): y = sum_k FFN_k(w_k * x).
    The choice scores are the logits under softmax_after_topk and the scores otherwise (plus selection_bias).
    """

    scoring: Scoring = "softmax"
    renormalize: bool = True
    softmax_after_topk: bool = False
    bias: bool = False
    selection_bias: bool = False
    groups: int = 1
    topk_groups: int = 1
    scaling: float = 1.0
    weight_on: WeightOn = "output"

    def __post_init__(self) -> None:
        if self.scoring not in ("softmax", "sigmoid"):
            raise MoEInputError(f"router.scoring: expected 'softmax' or 'sigmoid', got {self.scoring!r}")
        for name in ("renormalize", "softmax_after_topk", "bias", "selection_bias"):
            check_bool(f"router.{name}", getattr(self, name))
        check_int("router.groups", self.groups, 1)
        check_int("router.topk_groups", self.topk_groups, 1)
        if self.topk_groups > self.groups:
            raise MoEInputError(
                f"router.topk_groups: expected 1 <= topk_groups <= groups={self.groups}, got {self.topk_groups}"
            )
        _set(self, "scaling", as_float("router.scaling", self.scaling, positive=True))
        if self.weight_on not in ("output", "input"):
            raise MoEInputError(f"router.weight_on: expected 'output' or 'input', got {self.weight_on!r}")
        if self.softmax_after_topk and self.scoring != "softmax":
            raise MoEInputError("router.softmax_after_topk: only with scoring='softmax' (it is a softmax)")
        if self.softmax_after_topk and self.renormalize:
            raise MoEInputError(
                "router.renormalize: must be False with softmax_after_topk (the k softmax weights already sum to 1)"
            )

    @property
    def group_limited(self) -> bool:
        return self.topk_groups < self.groups


@dataclass(frozen=True)
class ExpertSpec:
    """Parameters of the expert FFN (the activation itself is MoESpec.activation, shared by routed and
    shared experts). The SwiGLU options apply to swiglu only:

      h = gate' * sigmoid(swiglu_alpha * gate') * (up' + swiglu_up_offset)
      gate' = min(gate, swiglu_limit), up' = clamp(up, -swiglu_limit, swiglu_limit)  (no clamp when None)

    bias: biases on the routed experts' projections, b1 [E, G*I] (gate/up) and b2 [E, H] (down).
    Shared experts have no biases (none of the published models gives them any).
    gpt-oss: swiglu_alpha 1.702, swiglu_limit 7.0, swiglu_up_offset 1.0, bias True.
    """

    swiglu_alpha: float = 1.0
    swiglu_limit: float | None = None
    swiglu_up_offset: float = 0.0
    bias: bool = False

    def __post_init__(self) -> None:
        _set(self, "swiglu_alpha", as_float("expert.swiglu_alpha", self.swiglu_alpha, positive=True))
        if self.swiglu_limit is not None:
            _set(self, "swiglu_limit", as_float("expert.swiglu_limit", self.swiglu_limit, positive=True))
        _set(self, "swiglu_up_offset", as_float("expert.swiglu_up_offset", self.swiglu_up_offset))
        check_bool("expert.bias", self.bias)

    @property
    def plain_swiglu(self) -> bool:
        """True when the SwiGLU options are the standard silu(gate) * up."""
        return self.swiglu_alpha == 1.0 and self.swiglu_limit is None and self.swiglu_up_offset == 0.0


@dataclass(frozen=True)
class SharedSpec:
    """Always-on experts: the layer's output is routed + shared.

    count         S shared experts (0: none), each an FFN H -> intermediate -> H with the routed experts'
                  activation (true of every listed model) and no biases.
    intermediate  each shared expert's intermediate size I_s (0 when count is 0). transformers builds
                  DeepSeek-V3's n_shared_experts as ONE MLP of n_shared_experts * moe_intermediate_size, so a
                  faithful spec says count=1 with that size.
    gated         Qwen2-MoE / Qwen3-Next: each shared expert's output times sigmoid(x . shared_gate[s]).
    """

    count: int = 0
    intermediate: int = 0
    gated: bool = False

    def __post_init__(self) -> None:
        check_int("shared.count", self.count, 0)
        check_int("shared.intermediate", self.intermediate, 0)
        check_bool("shared.gated", self.gated)
        if self.count and not self.intermediate:
            raise MoEInputError(f"shared.intermediate: expected >= 1 with count={self.count}, got 0")
        if not self.count and (self.intermediate or self.gated):
            raise MoEInputError("shared.count: expected >= 1 when shared.intermediate or shared.gated is set, got 0")


def record_dict(record) -> dict:
    """The fields of a RouterSpec / ExpertSpec / SharedSpec as a plain dict (for JSON)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}
