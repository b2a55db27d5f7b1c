"""hf_experts (peer): Hugging Face transformers' own experts module, fed our weights and routing.

transformers v5 stores MoE experts as 3D tensors in exactly our canonical layout (gate_up_proj
[E, 2I, H], down_proj [E, H, I]) and dispatches the experts forward through
`@use_experts_implementation` ("eager", "batched_mm", "grouped_mm", ...). This module builds
  * swiglu: `MixtralExperts` (silu(gate) * up),
  * gelu / relu: `NemotronHExperts` (HF's non-gated experts: up_proj [E, I, H], act, down),
on the meta device, then points its parameters at our weight tensors (no copy), and calls its
forward with routing from moebench.routing.route: the numbers are HF's, the routing ours.

config={"experts": {"experts_implementation": NAME}} picks HF's dispatch; the default is
"grouped_mm", what transformers v5 picks for a model when it can. transformers' grouped_mm needs
16-byte aligned rows (H, I multiples of 8 in bf16/fp16, of 4 in fp32); for other shapes HF's own
"eager" forward runs instead (recorded as stat "hf_experts_implementation").
"""

from __future__ import annotations

import functools
import importlib.metadata

import torch

from moebench.errors import MoEInputError
from moebench.registry import register
from moebench.routing import route_unless_given
from moebench.stats import record_stat
from moebench.weights import MoEWeights

DEFAULT_EXPERTS_IMPLEMENTATION = "grouped_mm"
_HF_ACT = {"swiglu": "silu", "gelu": "gelu", "relu": "relu"}


@functools.cache
def _version_problem(device: str) -> str | None:
    """None when the installed transformers has v5 fused experts modules, else why not."""
    try:
        version = importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        return "needs the optional package 'transformers' (pip install 'moebench[hf]')"
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if major < 5:
        return f"needs transformers >= 5 (fused 3D experts modules); installed {version}"
    return None


def _aligned(weights: MoEWeights) -> bool:
    multiple = 16 // weights.w1.element_size()
    return weights.spec.hidden % multiple == 0 and weights.spec.intermediate % multiple == 0


def _experts_classes(gated: bool) -> tuple[type, type, dict[str, str]]:
    """(config class, experts module class, our field -> the config's name for it) of HF's gated
    (Mixtral: gate_up_proj) or non-gated (NemotronH: up_proj) experts."""
    if gated:
        from transformers import MixtralConfig
        from transformers.models.mixtral.modeling_mixtral import MixtralExperts

        names = dict(experts="num_local_experts", intermediate="intermediate_size", act="hidden_act")
        return MixtralConfig, MixtralExperts, {**names, "w1": "gate_up_proj"}
    from transformers import NemotronHConfig
    from transformers.models.nemotron_h.modeling_nemotron_h import NemotronHExperts

    names = dict(experts="n_routed_experts", intermediate="moe_intermediate_size", act="mlp_hidden_act")
    return NemotronHConfig, NemotronHExperts, {**names, "w1": "up_proj"}


def _build_module(weights: MoEWeights, experts_implementation: str) -> torch.nn.Module:
    """An HF experts module whose parameters are our weight tensors (built on meta, no allocation)."""
    spec = weights.spec
    config_class, module_class, names = _experts_classes(spec.gated)
    config = config_class(
        num_experts_per_tok=spec.top_k,
        hidden_size=spec.hidden,
        num_attention_heads=1,
        num_key_value_heads=1,
        **{
            names["experts"]: spec.num_experts,
            names["intermediate"]: spec.intermediate,
            names["act"]: _HF_ACT[spec.activation],
        },
    )
    config._experts_implementation = experts_implementation
    with torch.device("meta"):
        module = module_class(config)
    setattr(module, names["w1"], torch.nn.Parameter(weights.w1, requires_grad=False))
    module.down_proj = torch.nn.Parameter(weights.w2, requires_grad=False)
    return module.eval()


def experts_implementation_for(weights: MoEWeights, config: dict | None) -> str:
    """HF dispatch name: config's choice, else grouped_mm when the shape allows it, else eager."""
    chosen = ((config or {}).get("experts") or {}).get("experts_implementation")
    if chosen is not None:
        if not isinstance(chosen, str):
            raise MoEInputError(f"config['experts']['experts_implementation']: expected a string, got {chosen!r}")
        return chosen
    return DEFAULT_EXPERTS_IMPLEMENTATION if _aligned(weights) else "eager"


@register(
    "hf_experts",
    kind="peer",
    description="Hugging Face transformers v5 experts module (MixtralExperts / NemotronHExperts), default grouped_mm",
    requires=("transformers",),
    dtypes=(torch.float32, torch.float16, torch.bfloat16),
    graph_safe=True,  # grouped_mm on CUDA bf16 sm80+ (HF counts with histc); eager/fallbacks sync: capture fails
    extra_check=_version_problem,
)
def hf_experts(x: torch.Tensor, weights: MoEWeights, *, out=None, config=None, routing=None) -> torch.Tensor:
    name = experts_implementation_for(weights, config)
    module = weights.derived(f"hf_experts/{name}", lambda w: _build_module(w, name))
    topk_weights, topk_ids = route_unless_given(x, weights, routing)  # [T, k] fp32, [T, k] int64
    record_stat("hf_experts_implementation", name)
    with torch.no_grad():
        result = module(x, topk_ids, topk_weights)  # [T, H] in x.dtype
    if out is None:
        return result.to(x.dtype)
    return out.copy_(result)
