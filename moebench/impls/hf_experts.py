"""hf_experts (peer): Hugging Face transformers' own experts module, fed our weights and routing.

transformers v5 stores MoE experts as 3D tensors in exactly our canonical layout (gate_up_proj
[E, 2I, H], down_proj [E, H, I]) and dispatches the experts forward through
`@use_experts_implementation` ("eager", "batched_mm", "grouped_mm", ...). This module builds
  * swiglu: `MixtralExperts` (silu(gate) * up),
  * gelu / relu: `NemotronHExperts` (HF's non-gated experts: up_proj [E, I, H], act, down),
  * specs with expert biases or SwiGLU options: `GptOssExperts` (biases, gate clamped above at limit, up
    clamped to +-limit, (up + 1) * gate * sigmoid(alpha * gate); gate/up interleaved, [E, H, 2I]: a derived
    copy of w1 and b1, zero biases when the spec has none). It always clamps and adds 1, so a spec must have
    swiglu_limit set and swiglu_up_offset 1 (gpt-oss's own); its forward loops over the hit experts (a host
    sync: no CUDA graph there),
on the meta device, then points its parameters at our weight tensors (no copy but gpt-oss's interleaving),
and calls its forward with routing from moebench.routing (every router option, or the given routing=): the
numbers are HF's, the routing ours. The experts modules weight expert outputs; input weighting (Llama-4) is
done as Llama4TextMoe does it: each (token, slot) row is the token scaled by its weight, run with weight 1,
and a token's k rows are summed. Shared experts run as transformers' own shared-expert MLP, `Qwen2MoeMLP`
(down(silu(gate(x)) * up(x)), a dense GEMM pair per shared expert), times sigmoid(x . shared_gate) as
Qwen2MoeSparseMoeBlock computes it when gated; that MLP is SwiGLU only, with none of the SwiGLU options.

config={"experts": {"experts_implementation": NAME}} picks HF's dispatch; the default is
"grouped_mm", what transformers v5 picks for a model when it can. transformers' grouped_mm needs
16-byte aligned rows (H, I multiples of 8 in bf16/fp16, of 4 in fp32); for other shapes HF's own
"eager" forward runs instead (recorded as stat "hf_experts_implementation").
"""

from __future__ import annotations

import functools
import importlib.metadata

import torch

from moebench.activations import expert_inputs
from moebench.errors import MoEInputError
from moebench.registry import register
from moebench.routing import route_unless_given
from moebench.spec import FEATURES
from moebench.stats import SHARED_STAT, record_stat
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


def _spec_reason(spec) -> str | None:
    """Why transformers' modules cannot compute spec's experts (None when they can): biases and SwiGLU options
    need GptOssExperts' own SwiGLU; shared experts need Qwen2MoeMLP's plain one."""
    x = spec.expert
    if spec.shared.count and not (spec.activation == "swiglu" and x.plain_swiglu):
        detail = f"activation={spec.activation!r}" + ("" if x.plain_swiglu else " with SwiGLU options")
        return f"shared: transformers' shared-expert MLP (Qwen2MoeMLP) is a plain SwiGLU; got {detail}"
    if x.plain_swiglu and not x.bias:
        return None
    why = "transformers has expert biases and SwiGLU options only in GptOssExperts, whose SwiGLU"
    if not spec.gated:
        return f"expert.bias: {why} is gated; got activation={spec.activation!r}"
    if x.swiglu_limit is None:
        return f"expert.swiglu_limit: {why} always clamps; got no limit"
    if x.swiglu_up_offset != 1.0:
        return f"expert.swiglu_up_offset: {why} always adds 1 to up; got {x.swiglu_up_offset:g}"
    return None


def _build_gpt_oss(weights: MoEWeights) -> torch.nn.Module:
    """transformers' GptOssExperts holding our weights: gate/up interleaved per row pair and transposed."""
    from transformers import GptOssConfig
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssExperts

    spec = weights.spec
    e, h, i = spec.num_experts, spec.hidden, spec.intermediate
    x = spec.expert
    config = GptOssConfig(
        num_local_experts=e,
        num_experts_per_tok=spec.top_k,
        hidden_size=h,
        intermediate_size=i,
        swiglu_alpha=x.swiglu_alpha,
        swiglu_limit=x.swiglu_limit,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=4,
    )
    with torch.device("meta"):
        module = GptOssExperts(config)
    if (getattr(module, "alpha", None), getattr(module, "limit", None)) != (x.swiglu_alpha, x.swiglu_limit):
        raise MoEInputError(  # never a silently different SwiGLU (a transformers version that fixes them)
            f"expert.swiglu_alpha/limit: this transformers' GptOssExperts does not take them from its config "
            f"(got alpha={getattr(module, 'alpha', None)}, limit={getattr(module, 'limit', None)})"
        )
    b1 = weights.b1 if weights.b1 is not None else weights.w1.new_zeros(e, 2 * i)
    b2 = weights.b2 if weights.b2 is not None else weights.w2.new_zeros(e, h)
    interleave = lambda t: t.view(e, 2, i, *t.shape[2:]).transpose(1, 2).reshape(t.shape)  # noqa: E731
    params = {
        "gate_up_proj": interleave(weights.w1).transpose(1, 2),  # [E, H, 2I]: column 2j gate j, 2j+1 up j
        "gate_up_proj_bias": interleave(b1),  # [E, 2I]
        "down_proj": weights.w2.transpose(1, 2),  # [E, I, H]
        "down_proj_bias": b2,  # [E, H]
    }
    for name, tensor in params.items():
        setattr(module, name, torch.nn.Parameter(tensor, requires_grad=False))
    return module.eval()


def _build_shared(weights: MoEWeights) -> list[tuple[torch.nn.Module, torch.nn.Module | None]]:
    """(transformers' Qwen2MoeMLP, its Linear(H, 1) gate or None) per shared expert, holding our tensors."""
    from transformers import Qwen2MoeConfig
    from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeMLP

    spec = weights.spec
    h, i_s = spec.hidden, spec.shared.intermediate
    config = Qwen2MoeConfig(hidden_size=h, hidden_act="silu", num_attention_heads=1, num_key_value_heads=1)
    parameter = lambda t: torch.nn.Parameter(t, requires_grad=False)  # noqa: E731
    modules = []
    for s in range(spec.shared.count):
        with torch.device("meta"):
            mlp, gate = Qwen2MoeMLP(config, intermediate_size=i_s), torch.nn.Linear(h, 1, bias=False)
        mlp.gate_proj.weight = parameter(weights.shared_w1[s, :i_s])  # [I_s, H]
        mlp.up_proj.weight = parameter(weights.shared_w1[s, i_s:])  # [I_s, H]
        mlp.down_proj.weight = parameter(weights.shared_w2[s])  # [H, I_s]
        if spec.shared.gated:
            gate.weight = parameter(weights.shared_gate[s, None])  # [1, H]
        modules.append((mlp.eval(), gate.eval() if spec.shared.gated else None))
    return modules


def _routed(module: torch.nn.Module, x: torch.Tensor, weights: MoEWeights, routing) -> torch.Tensor:
    """The routed experts' part [T, H] in fp32: the module weights outputs, or (weight_on='input') it runs
    each (token, slot) row scaled by its weight with weight 1 and the k rows are summed (Llama4TextMoe)."""
    spec, (topk_weights, topk_ids) = weights.spec, routing  # [T, k] fp32, [T, k] int64
    if spec.router.weight_on != "input":
        return module(x, topk_ids, topk_weights).float()
    rows = expert_inputs(
        spec, x[:, None, :].expand(-1, spec.top_k, -1).reshape(-1, spec.hidden), topk_weights.reshape(-1)
    )
    ids = topk_ids.reshape(-1, 1)  # [T*k, 1]
    y = module(rows, ids, torch.ones(ids.shape, dtype=torch.float32, device=x.device))  # [T*k, H]
    return y.float().view(x.shape[0], spec.top_k, spec.hidden).sum(1)


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
    description="Hugging Face transformers v5 experts modules (Mixtral/NemotronH/GptOss experts), default grouped_mm",
    requires=("transformers",),
    dtypes=(torch.float32, torch.float16, torch.bfloat16),
    graph_safe=True,  # grouped_mm on CUDA bf16 sm80+ (HF counts with histc); eager/fallbacks sync: capture fails
    extra_check=_version_problem,
    spec_check=_spec_reason,
    features=FEATURES,
    features_note="biases / SwiGLU options only as gpt-oss's (clamped, up + 1); shared experts only with plain SwiGLU",
)
def hf_experts(x: torch.Tensor, weights: MoEWeights, *, out=None, config=None, routing=None) -> torch.Tensor:
    if weights.spec.expert.plain_swiglu and not weights.spec.expert.bias:
        name = experts_implementation_for(weights, config)
        module = weights.derived(f"hf_experts/{name}", lambda w: _build_module(w, name))
    else:
        name = "GptOssExperts (eager)"
        module = weights.derived("hf_experts/gpt_oss", _build_gpt_oss)
    record_stat("hf_experts_implementation", name)
    with torch.no_grad():
        result = _routed(module, x, weights, route_unless_given(x, weights, routing))  # [T, H] fp32
        if weights.spec.shared.count:
            record_stat(SHARED_STAT, "dense GEMM pair per shared expert (transformers' Qwen2MoeMLP)")
        for mlp, gate in weights.derived("hf_experts/shared", _build_shared):
            y = mlp(x)  # [T, H] in x.dtype
            result += (y if gate is None else torch.sigmoid(gate(x)) * y).float()
    if out is None:
        return result.to(x.dtype)
    return out.copy_(result)
