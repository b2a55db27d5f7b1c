"""The one problem record every implementation, test, benchmark and export reads.

MoESpec(num_experts E, top_k k, hidden H, intermediate I, activation, dtype, router: RouterSpec,
        expert: ExpertSpec, shared: SharedSpec, quant: str | None)
RouterSpec, ExpertSpec and SharedSpec (moebench.layer_options, re-exported here) state the routing options,
the expert FFN's parameters and the shared experts; checks across them (k against the groups, SwiGLU options
only with swiglu) are here. `spec.features()` names the options a spec uses beyond the plain layer, which is
how implementations refuse what they do not honour. `quant` names the format of the routed experts'
weights (moebench.quant.formats; None: the spec dtype); `dtype` stays the activations' and router's dtype.
`to_dict` / `spec_from_dict` round-trip a spec through JSON (custom ops and exported files carry it that way).
`parse_dtype` / `dtype_name` (moebench.dtypes, re-exported here) read and write a dtype's short name.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Literal

import torch

from moebench.dtypes import dtype_name, parse_dtype
from moebench.errors import MoEInputError
from moebench.layer_options import FEATURES, ROUTING_ONLY, ExpertSpec, RouterSpec, SharedSpec, record_dict

Activation = Literal["swiglu", "gelu", "relu"]

ACTIVATIONS: tuple[str, ...] = ("swiglu", "gelu", "relu")
GATED_ACTIVATIONS: frozenset[str] = frozenset({"swiglu"})


@dataclass(frozen=True)
class MoESpec:
    """One MoE layer: E experts, top-k routing, FFN hidden -> intermediate -> hidden, plus its options.

    Canonical weight layout (see moebench.weights.MoEWeights):
      router [E, H];  w1 [E, G*I, H] (G=2 for swiglu: gate rows then up rows; G=1 otherwise);
      w2 [E, H, I].  Same as Hugging Face transformers v5 fused experts. Optional tensors (biases, shared
      experts) exactly when the options below ask for them.
    """

    num_experts: int
    top_k: int
    hidden: int
    intermediate: int
    activation: Activation = "swiglu"
    dtype: torch.dtype = torch.bfloat16
    router: RouterSpec = RouterSpec()
    expert: ExpertSpec = ExpertSpec()
    shared: SharedSpec = SharedSpec()
    quant: str | None = None  # routed experts' weight format (moebench.quant.QUANT_FORMATS); None: unquantised

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
        for name, kind in (("router", RouterSpec), ("expert", ExpertSpec), ("shared", SharedSpec)):
            if not isinstance(getattr(self, name), kind):
                raise MoEInputError(f"{name}: expected a {kind.__name__}, got {type(getattr(self, name)).__name__}")
        self._check_groups()
        self._check_quant()
        swiglu_options = [name for name in sorted(self.features()) if name.startswith("expert.swiglu_")]
        if swiglu_options and not self.gated:
            raise MoEInputError(
                f"{swiglu_options[0]}: only with activation='swiglu', got activation={self.activation!r}"
            )

    def _check_quant(self) -> None:
        """quant: None or a format name, stored by its canonical name; H and I must fit its K blocks."""
        if self.quant is None:
            return
        from moebench.quant.formats import get_format

        try:
            fmt = get_format(self.quant)
        except MoEInputError as err:
            raise MoEInputError(f"quant: {err}") from None
        object.__setattr__(self, "quant", fmt.name)
        for name, k in (("hidden", self.hidden), ("intermediate", self.intermediate)):
            if k % fmt.k_multiple:
                raise MoEInputError(f"quant: {fmt.name} needs {name} to be a multiple of {fmt.k_multiple}, got {k}")

    def _check_groups(self) -> None:
        r, e = self.router, self.num_experts
        if e % r.groups:
            raise MoEInputError(f"router.groups: must divide num_experts={e}, got {r.groups}")
        if not r.group_limited:
            return
        per_group = e // r.groups
        if per_group < 2:
            raise MoEInputError(
                f"router.groups: a group's score is the sum of its top-2 scores, so each of the {r.groups} groups "
                f"needs >= 2 of the {e} experts"
            )
        if self.top_k > r.topk_groups * per_group:
            raise MoEInputError(
                f"top_k: expected <= {r.topk_groups * per_group} (the experts of topk_groups={r.topk_groups} groups "
                f"of {per_group}), got {self.top_k}"
            )

    # -- derived quantities ------------------------------------------------------------------
    @property
    def gated(self) -> bool:
        return self.activation in GATED_ACTIVATIONS

    @property
    def w1_rows(self) -> int:
        """Rows of one expert's first weight: 2*I for gated activations, I otherwise."""
        return (2 if self.gated else 1) * self.intermediate

    @property
    def shared_w1_rows(self) -> int:
        """Rows of one shared expert's first weight: G * I_s (0 without shared experts)."""
        return (2 if self.gated else 1) * self.shared.intermediate

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.num_experts, self.top_k, self.hidden, self.intermediate)

    def features(self) -> frozenset[str]:
        """The options this spec uses beyond the plain layer, named as in layer_options.FEATURES."""
        r, x, s = self.router, self.expert, self.shared
        used = {
            "router.bias": r.bias,
            "router.selection_bias": r.selection_bias,
            "router.groups": r.group_limited,
            "router.softmax_after_topk": r.softmax_after_topk,
            "router.scaling": r.scaling != 1.0,
            "router.weight_on": r.weight_on != "output",
            "expert.bias": x.bias,
            "expert.swiglu_alpha": x.swiglu_alpha != 1.0,
            "expert.swiglu_limit": x.swiglu_limit is not None,
            "expert.swiglu_up_offset": x.swiglu_up_offset != 0.0,
            "shared": s.count > 0,
            "shared.gated": s.gated,
        }
        return frozenset(name for name in FEATURES if used[name])

    def replace(self, **changes) -> MoESpec:
        return dataclasses.replace(self, **changes)

    def with_dtype(self, dtype: str | torch.dtype) -> MoESpec:
        return self.replace(dtype=parse_dtype(dtype))

    def flops(self, num_tokens: int) -> int:
        """Useful FLOPs of the expert FFNs (router excluded): 2 * T * (k * (G*I + I) + S * (G*I_s + I_s)) * H."""
        routed = self.top_k * (self.w1_rows + self.intermediate)
        shared = self.shared.count * (self.shared_w1_rows + self.shared.intermediate)
        return 2 * num_tokens * (routed + shared) * self.hidden

    def expert_weight_bytes(self, num_active_experts: int | None = None) -> int:
        """Bytes of expert weights read once for `num_active_experts` routed experts (default all E), plus the
        shared experts' (read at every T). Quantised experts count their packed codes, scales and zero points
        (the shared experts stay in the spec dtype)."""
        experts = self.num_experts if num_active_experts is None else num_active_experts
        itemsize = torch.finfo(self.dtype).bits // 8
        shared = self.shared.count * (self.shared_w1_rows + self.shared.intermediate) * self.hidden * itemsize
        return experts * self.routed_expert_bytes() + shared

    @property
    def quant_format(self):
        """The experts' weight format (a moebench.quant.formats.QuantFormat), None when unquantised."""
        if self.quant is None:
            return None
        from moebench.quant.formats import get_format

        return get_format(self.quant)

    def routed_expert_bytes(self) -> int:
        """Bytes of one routed expert's w1 and w2 as stored: packed codes plus scales and zero points when quantised."""
        if self.quant is None:
            return (self.w1_rows + self.intermediate) * self.hidden * torch.finfo(self.dtype).bits // 8
        from moebench.quant.formats import get_format

        fmt = get_format(self.quant)
        return fmt.weight_bytes((self.w1_rows, self.hidden)) + fmt.weight_bytes((self.hidden, self.intermediate))

    def describe_parts(self) -> dict[str, str]:
        """The spec in words, by part (only what differs from the plain layer): shape, expert (activation,
        its options, biases), dtype, router (scoring and its options), shared. `moebench list --presets`
        shows these as columns; describe() joins them."""
        r, x, s = self.router, self.expert, self.shared
        expert = self.activation
        if self.gated and not x.plain_swiglu:
            limit = "none" if x.swiglu_limit is None else f"{x.swiglu_limit:g}"
            expert += f"(alpha={x.swiglu_alpha:g},limit={limit},up+{x.swiglu_up_offset:g})"
        router = [r.scoring + ("+topk-softmax" if r.softmax_after_topk else "") + ("+renorm" if r.renormalize else "")]
        router += ["router-bias"] if r.bias else []
        router += ["sel-bias"] if r.selection_bias else []
        router += [f"groups={r.topk_groups}/{r.groups}"] if r.group_limited else []
        router += [f"scale={r.scaling:g}"] if r.scaling != 1.0 else []
        router += ["input-weighted"] if r.weight_on == "input" else []
        return {
            "shape": f"E={self.num_experts} k={self.top_k} H={self.hidden} I={self.intermediate}",
            "expert": expert + ("+bias" if x.bias else ""),
            "dtype": dtype_name(self.dtype),
            "router": " ".join(router),
            "shared": f"{s.count}x{s.intermediate}" + ("+gate" if s.gated else "") if s.count else "",
            "quant": self.quant or "",
        }

    def describe(self) -> str:
        """One line: the shape, then only the options that differ from the plain layer."""
        parts = self.describe_parts()
        if parts["shared"]:
            parts["shared"] = "shared=" + parts["shared"]
        if parts["quant"]:
            parts["quant"] = "quant=" + parts["quant"]
        return " ".join(text for text in parts.values() if text)

    def to_dict(self) -> dict:
        """Plain types only (JSON): the inverse of spec_from_dict."""
        return {
            "num_experts": self.num_experts,
            "top_k": self.top_k,
            "hidden": self.hidden,
            "intermediate": self.intermediate,
            "activation": self.activation,
            "dtype": dtype_name(self.dtype),
            "router": record_dict(self.router),
            "expert": record_dict(self.expert),
            "shared": record_dict(self.shared),
            "quant": self.quant,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def refused_features(
    spec: MoESpec, honoured: frozenset[str], who: str, note: str = "", *, routing_given: bool = False
) -> str | None:
    """Why `who` (an implementation, an op) cannot compute `spec`: the options it uses that `who` does not
    honour, named by field, with `note` (the reason) - or None when it honours them all. With a precomputed
    routing the options that only shape the routing (ROUTING_ONLY) do not count."""
    waived = ROUTING_ONLY if routing_given else frozenset()
    missing = [name for name in FEATURES if name in spec.features() and name not in honoured | waived]
    if not missing:
        return None
    return f"{', '.join(missing)}: {who} does not honour {'it' if len(missing) == 1 else 'them'}" + (
        f" ({note})" if note else ""
    )


def spec_from_dict(d: dict) -> MoESpec:
    """MoESpec from MoESpec.to_dict() (or its JSON text); records written before the options (or quant) default them."""
    if isinstance(d, str):
        d = json.loads(d)
    try:
        parts = {name: kind(**d.get(name, {})) for name, kind in _PARTS.items()}
        return MoESpec(
            d["num_experts"],
            d["top_k"],
            d["hidden"],
            d["intermediate"],
            d["activation"],
            d["dtype"],
            **parts,
            quant=d.get("quant"),
        )
    except (KeyError, TypeError) as exc:
        raise MoEInputError(f"spec: expected a MoESpec.to_dict() record, got {d!r} ({exc})") from None


_PARTS = {"router": RouterSpec, "expert": ExpertSpec, "shared": SharedSpec}
