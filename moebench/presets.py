"""Named layers: the real models' MoE layers, exactly as published, and tiny ones that run in seconds on a CPU.

Each real preset states that model's layer from its published config.json (the file and fields are cited
next to it; PRESET_SOURCES says where each number comes from) and the definition of its MoE block in
transformers (moebench.layer_options cites the modeling files). Weights are random: a preset fixes the
computation, not the trained values.
"""

from __future__ import annotations

import torch

from moebench.errors import MoEInputError, UnknownImplementationError
from moebench.spec import ExpertSpec, MoESpec, RouterSpec, SharedSpec, parse_dtype

_SOFTMAX_RENORM = RouterSpec("softmax", renormalize=True)
_SOFTMAX_PLAIN = RouterSpec("softmax", renormalize=False)
_SIGMOID_RENORM = RouterSpec("sigmoid", renormalize=True)
# DeepSeek-V3 family (transformers DeepseekV3TopkRouter / Glm4MoeTopkRouter): sigmoid, e_score_correction_bias,
# n_group / topk_group, norm_topk_prob, routed_scaling_factor
_NOAUX_TC = dict(scoring="sigmoid", renormalize=True, selection_bias=True)
# gpt-oss (GptOssTopKRouter, GptOssExperts; gpt_oss/torch/model.py swiglu(alpha=1.702, limit) in openai/gpt-oss)
_GPT_OSS_ROUTER = RouterSpec("softmax", renormalize=False, softmax_after_topk=True, bias=True)
_GPT_OSS_EXPERT = ExpertSpec(swiglu_alpha=1.702, swiglu_limit=7.0, swiglu_up_offset=1.0, bias=True)

# name -> MoESpec fields but the dtype: (E, k, H, I) first, then options
_PRESETS: dict[str, dict] = {
    # real models (bf16 by default); sources in PRESET_SOURCES
    "mixtral-8x7b": dict(shape=(8, 2, 4096, 14336), router=_SOFTMAX_RENORM),
    "qwen3-30b-a3b": dict(shape=(128, 8, 2048, 768), router=_SOFTMAX_RENORM),
    "deepseek-v3": dict(
        shape=(256, 8, 7168, 2048),
        router=RouterSpec(**_NOAUX_TC, groups=8, topk_groups=4, scaling=2.5),
        shared=SharedSpec(1, 2048),
    ),
    "olmoe-1b-7b": dict(shape=(64, 8, 2048, 1024), router=_SOFTMAX_PLAIN),
    "gpt-oss-20b": dict(shape=(32, 4, 2880, 2880), router=_GPT_OSS_ROUTER, expert=_GPT_OSS_EXPERT),
    "gpt-oss-120b": dict(shape=(128, 4, 2880, 2880), router=_GPT_OSS_ROUTER, expert=_GPT_OSS_EXPERT),
    "kimi-k2": dict(
        shape=(384, 8, 7168, 2048), router=RouterSpec(**_NOAUX_TC, scaling=2.827), shared=SharedSpec(1, 2048)
    ),
    "glm-4.5-air": dict(shape=(128, 8, 4096, 1408), router=RouterSpec(**_NOAUX_TC), shared=SharedSpec(1, 1408)),
    "qwen1.5-moe-a2.7b": dict(shape=(60, 4, 2048, 1408), router=_SOFTMAX_PLAIN, shared=SharedSpec(1, 5632, True)),
    "llama4-scout": dict(
        shape=(16, 1, 5120, 8192),
        router=RouterSpec("sigmoid", renormalize=False, weight_on="input"),
        shared=SharedSpec(1, 8192),
    ),
    # tiny presets for CPU runs and CI; sizes deliberately not multiples of 16 or of block sizes
    "tiny": dict(shape=(4, 2, 32, 48), router=_SOFTMAX_RENORM),
    "tiny-odd": dict(shape=(5, 2, 36, 52), router=_SOFTMAX_PLAIN),
    "tiny-k-eq-e": dict(shape=(3, 3, 24, 40), router=_SOFTMAX_RENORM),
    "tiny-many": dict(shape=(16, 4, 64, 32), router=_SIGMOID_RENORM),
    "tiny-gelu": dict(shape=(4, 1, 40, 72), activation="gelu", router=_SOFTMAX_PLAIN),
    "tiny-relu": dict(shape=(6, 2, 48, 20), activation="relu", router=_SOFTMAX_RENORM),
    # Qwen2-MoE style: two gated shared experts (of their own size) beside softmax routing
    "tiny-shared": dict(shape=(6, 2, 40, 24), router=_SOFTMAX_PLAIN, shared=SharedSpec(2, 36, True)),
    # DeepSeek-V3 style: sigmoid + selection bias, best 2 of 4 groups, scaling, a shared expert of size I
    "tiny-groups": dict(
        shape=(12, 3, 44, 20),
        router=RouterSpec(**_NOAUX_TC, groups=4, topk_groups=2, scaling=2.5),
        shared=SharedSpec(1, 20),
    ),
    # gpt-oss style; limit 2.0 instead of 7.0 so the clamp acts on the N(0, 1) pre-activations of random weights
    # (about 2% of gates and 5% of ups); 16-bit rounding near the limit flips the clamp's derivative, which the
    # gradient gate reads both ways (moebench.gradparity: h1 as accumulated or rounded to the compute dtype)
    "tiny-oss": dict(
        shape=(5, 2, 36, 28),
        router=_GPT_OSS_ROUTER,
        expert=ExpertSpec(swiglu_alpha=1.702, swiglu_limit=2.0, swiglu_up_offset=1.0, bias=True),
    ),
    # Llama-4 style: k = 1, sigmoid weight on the expert's input, a shared expert
    "tiny-input-scaled": dict(
        shape=(4, 1, 52, 30),
        router=RouterSpec("sigmoid", renormalize=False, weight_on="input"),
        shared=SharedSpec(1, 44),
    ),
    # small presets: large enough for meaningful CPU timings (the CPU main job), seconds to run
    "small-8x2": dict(shape=(8, 2, 512, 1024), router=_SOFTMAX_RENORM),
    "small-32x4": dict(shape=(32, 4, 256, 384), router=_SOFTMAX_RENORM),
}

_HF = "huggingface.co/"
# where each real preset's numbers come from (config.json fields; read through public copies of those files)
PRESET_SOURCES: dict[str, str] = {
    "mixtral-8x7b": f"{_HF}mistralai/Mixtral-8x7B-v0.1 config.json: num_local_experts 8, num_experts_per_tok 2, "
    "hidden_size 4096, intermediate_size 14336; MixtralSparseMoeBlock always renormalises",
    "qwen3-30b-a3b": f"{_HF}Qwen/Qwen3-30B-A3B config.json: num_experts 128, num_experts_per_tok 8, hidden_size 2048, "
    "moe_intermediate_size 768, norm_topk_prob true",
    "deepseek-v3": f"{_HF}deepseek-ai/DeepSeek-V3 config.json (= transformers DeepseekV3Config defaults and "
    "github deepseek-ai/DeepSeek-V3 inference/configs/config_671B.json): n_routed_experts 256, num_experts_per_tok 8, "
    "hidden_size 7168, moe_intermediate_size 2048, n_shared_experts 1, n_group 8, topk_group 4, "
    "routed_scaling_factor 2.5, scoring_func sigmoid, topk_method noaux_tc, norm_topk_prob true",
    "olmoe-1b-7b": f"{_HF}allenai/OLMoE-1B-7B-0924 config.json: num_experts 64, num_experts_per_tok 8, "
    "hidden_size 2048, intermediate_size 1024, norm_topk_prob false",
    "gpt-oss-20b": f"{_HF}openai/gpt-oss-20b config.json: num_local_experts 32, num_experts_per_tok 4, "
    "hidden_size 2880, intermediate_size 2880, swiglu_limit 7.0; alpha 1.702 and up + 1 from "
    "github openai/gpt-oss gpt_oss/torch/model.py swiglu; router and expert biases from GptOssTopKRouter/GptOssExperts",
    "gpt-oss-120b": f"{_HF}openai/gpt-oss-120b config.json (= github openai/gpt-oss gpt_oss/torch/model.py "
    "ModelConfig): num_experts 128, experts_per_token 4, hidden_size 2880, intermediate_size 2880, swiglu_limit 7.0",
    "kimi-k2": f"{_HF}moonshotai/Kimi-K2-Instruct config.json (DeepseekV3 architecture; github MoonshotAI/Kimi-K2 "
    "README: 384 experts, 8 selected, 1 shared, hidden 7168, expert hidden 2048): n_group 1, topk_group 1, "
    "routed_scaling_factor 2.827, scoring_func sigmoid, topk_method noaux_tc, norm_topk_prob true",
    "glm-4.5-air": f"{_HF}zai-org/GLM-4.5-Air config.json (Glm4MoeForCausalLM): n_routed_experts 128, "
    "num_experts_per_tok 8, hidden_size 4096, moe_intermediate_size 1408, n_shared_experts 1, n_group 1, "
    "topk_group 1, routed_scaling_factor 1.0, norm_topk_prob true; sigmoid + e_score_correction_bias from "
    "Glm4MoeTopkRouter",
    "qwen1.5-moe-a2.7b": f"{_HF}Qwen/Qwen1.5-MoE-A2.7B config.json: num_experts 60, num_experts_per_tok 4, "
    "hidden_size 2048, moe_intermediate_size 1408, shared_expert_intermediate_size 5632, norm_topk_prob false; "
    "the shared expert's sigmoid gate from Qwen2MoeSparseMoeBlock",
    "llama4-scout": f"{_HF}meta-llama/Llama-4-Scout-17B-16E config.json text_config: num_local_experts 16, "
    "num_experts_per_tok 1, hidden_size 5120, intermediate_size 8192 (experts and the shared expert, "
    "Llama4TextMoe); sigmoid of the top-1 logit scaling the expert's input from Llama4Router/Llama4TextMoe",
}

PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)
MODEL_PRESETS: tuple[str, ...] = tuple(PRESET_SOURCES)  # every preset named after a model
# the default set of GPU benchmarks and sessions
REAL_PRESETS: tuple[str, ...] = ("mixtral-8x7b", "qwen3-30b-a3b", "deepseek-v3", "olmoe-1b-7b", "gpt-oss-20b")
TINY_PRESETS: tuple[str, ...] = tuple(name for name in _PRESETS if name.startswith("tiny"))
SMALL_PRESETS: tuple[str, ...] = tuple(name for name in _PRESETS if name.startswith("small"))


def get_preset(name: str, dtype: str | torch.dtype = torch.bfloat16) -> MoESpec:
    """The spec of a named preset in `dtype`; 'name+format' (as spec_label writes it) quantises its routed experts
    (only those: shared experts stay in `dtype`, so deepseek-v3+fp8-block128 differs from DeepSeek-V3's FP8
    checkpoint, whose shared expert is FP8 too)."""
    base, plus, fmt = name.partition("+")
    if base not in _PRESETS:
        raise UnknownImplementationError(f"preset: unknown name {base!r}; known: {', '.join(PRESET_NAMES)}")
    fields = dict(_PRESETS[base])
    e, k, h, i = fields.pop("shape")
    spec = MoESpec(e, k, h, i, dtype=parse_dtype(dtype), **fields)
    if not plus:
        return spec
    try:
        return spec.replace(quant=fmt)
    except MoEInputError as exc:
        raise MoEInputError(f"preset {name!r}: {exc}") from None


def parse_shape(text: str, dtype: str | torch.dtype = torch.bfloat16) -> MoESpec:
    """'E,k,H,I' (optionally ',activation') -> MoESpec; used by --shape on the CLI."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (4, 5):
        raise MoEInputError(f"shape: expected 'E,k,H,I' or 'E,k,H,I,activation', got {text!r}")
    try:
        e, k, h, i = (int(p) for p in parts[:4])
    except ValueError:
        raise MoEInputError(f"shape: E,k,H,I must be integers, got {text!r}") from None
    act = parts[4] if len(parts) == 5 else "swiglu"
    return MoESpec(e, k, h, i, activation=act, dtype=parse_dtype(dtype))


def spec_label(spec: MoESpec) -> str:
    """The preset name for a spec if it matches one (ignoring dtype), else 'E,k,H,I'; '+<format>' appended
    for quantised experts (e.g. 'tiny+int4-g128')."""
    suffix = "" if spec.quant is None else f"+{spec.quant}"
    plain = spec.replace(quant=None)
    for name in _PRESETS:
        candidate = get_preset(name, spec.dtype)
        if candidate == plain:
            return name + suffix
    e, k, h, i = spec.shape
    return f"{e},{k},{h},{i}{suffix}"
