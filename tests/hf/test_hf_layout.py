"""What weights_from_hf reads from where: declared storage layouts (H = 2I included), v4 per-expert modules,
and that every option it reads from a module matters (turning it off in the spec breaks parity)."""

import dataclasses

import pytest
import torch
from families import FAMILIES, FAMILY, randomize, run_block
from torch import nn

from moebench.hf import weights_from_hf
from moebench.parity import compare
from moebench.reference import reference_moe

pytest.importorskip("transformers")


# option -> (the spec part it lives in, the field changes that turn it off, the tensors it needs)
_OFF = {
    "router.bias": ("router", {"bias": False}, ("router_bias",)),
    "router.selection_bias": ("router", {"selection_bias": False}, ("selection_bias",)),
    "router.groups": ("router", {"groups": 1, "topk_groups": 1}, ()),
    "router.scaling": ("router", {"scaling": 1.0}, ()),
    "router.weight_on": ("router", {"weight_on": "output"}, ()),
    "expert.bias": ("expert", {"bias": False}, ("b1", "b2")),
    "expert.swiglu_alpha": ("expert", {"swiglu_alpha": 1.0}, ()),
    "expert.swiglu_limit": ("expert", {"swiglu_limit": None}, ()),
    "expert.swiglu_up_offset": ("expert", {"swiglu_up_offset": 0.0}, ()),
    "shared": ("shared", {"count": 0, "intermediate": 0, "gated": False}, ("shared_w1", "shared_w2", "shared_gate")),
    "shared.gated": ("shared", {"gated": False}, ("shared_gate",)),
}


def option_off(weights, option: str):
    """The same weights with one spec option turned off (its tensors dropped), or renormalisation flipped."""
    spec = weights.spec
    if option == "renormalize":
        part, fields, dropped = "router", {"renormalize": not spec.router.renormalize}, ()
    else:
        part, fields, dropped = _OFF[option]
    changed = spec.replace(**{part: dataclasses.replace(getattr(spec, part), **fields)})
    return type(weights)(changed, **{n: t for n, t in weights.tensors().items() if n not in dropped})


@pytest.mark.parametrize("family", [f.name for f in FAMILIES])
def test_every_option_read_from_the_module_matters(family):
    """Each option the conversion states changes the output for these inputs: the parity tests are not
    passing by accident (softmax_after_topk is left out: it equals softmax + renormalise exactly)."""
    block = randomize(FAMILY[family].make())
    weights = weights_from_hf(block)
    x = torch.randn(333, weights.spec.hidden, generator=torch.Generator().manual_seed(7))
    out = run_block(block, x)
    assert compare(out, reference_moe(x, weights), torch.float32).ok
    options = sorted(weights.spec.features() - {"router.softmax_after_topk"})
    if not weights.spec.router.softmax_after_topk:
        options.append("renormalize")
    for option in options:
        result = compare(out, reference_moe(x, option_off(weights, option)), torch.float32)
        assert result.rel_l2 > 1e-3, f"{family}: {option} off still matches ({result})"


def test_h_equal_2i_is_read_from_the_declared_layout():
    """OLMoE (H=40, I=20, [E, 2I, H]) and gpt-oss (H=40, I=20, transposed [E, H, 2I] and interleaved): both store
    gate_up_proj as a square [E, 40, 40] per expert, so only the declaration says which axis is which."""
    olmoe = randomize(FAMILY["olmoe"].make())
    assert olmoe.experts.gate_up_proj.shape[1:] == (40, 40) and not olmoe.experts.is_transposed
    weights = weights_from_hf(olmoe)
    assert (weights.spec.hidden, weights.spec.intermediate) == (40, 20)
    assert torch.equal(weights.w1, olmoe.experts.gate_up_proj.detach())
    oss = randomize(FAMILY["gpt_oss"].make())
    experts = oss.experts
    assert experts.gate_up_proj.shape[1:] == (40, 40) and experts.is_transposed and not experts.is_concatenated
    weights = weights_from_hf(oss)
    i = weights.spec.intermediate
    assert torch.equal(weights.w_gate, experts.gate_up_proj.detach()[:, :, 0::2].transpose(1, 2))
    assert torch.equal(weights.w_up, experts.gate_up_proj.detach()[:, :, 1::2].transpose(1, 2))
    assert torch.equal(weights.w2, experts.down_proj.detach().transpose(1, 2))
    assert torch.equal(weights.b1[:, :i], experts.gate_up_proj_bias.detach()[:, 0::2])
    assert torch.equal(weights.router_bias, oss.router.bias.detach())


@pytest.mark.parametrize("transposed,concatenated", [(True, True), (False, False), (True, False)])
def test_a_declared_storage_is_followed(transposed, concatenated):
    """Mixtral's experts re-stored in another declared layout convert to the same weights."""
    block = randomize(FAMILY["mixtral"].make())
    expected = weights_from_hf(block)
    gate_up = block.experts.gate_up_proj.detach()
    i = gate_up.shape[1] // 2
    if not concatenated:  # rows g0, u0, g1, u1, ...
        gate_up = torch.stack([gate_up[:, :i], gate_up[:, i:]], dim=2).reshape(gate_up.shape)
    down = block.experts.down_proj.detach()
    if transposed:
        gate_up, down = gate_up.transpose(1, 2), down.transpose(1, 2)
    block.experts.gate_up_proj = nn.Parameter(gate_up.contiguous())
    block.experts.down_proj = nn.Parameter(down.contiguous())
    block.experts.is_transposed, block.experts.is_concatenated = transposed, concatenated
    got = weights_from_hf(block)
    assert all(torch.equal(got.tensors()[n], t) for n, t in expected.tensors().items())


class _V4Mlp(nn.Module):
    """A transformers 4.x per-expert MLP (MixtralBlockSparseTop2MLP's w1/w3/w2, or Qwen2MoeMLP-style names)."""

    def __init__(self, w1: torch.Tensor, w2: torch.Tensor, names: tuple[str, str, str]):
        super().__init__()
        i = w1.shape[0] // 2
        for name, weight in zip(names, (w1[:i], w1[i:], w2)):
            layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
            layer.weight = nn.Parameter(weight.clone())
            setattr(self, name, layer)
        self.act_fn = nn.SiLU()


V4_FAMILIES = {  # family -> the v4 experts' projection names, and whether its gate was an nn.Linear
    "mixtral": (("w1", "w3", "w2"), True),
    "minimax": (("w1", "w3", "w2"), True),
    "qwen2_moe": (("gate_proj", "up_proj", "down_proj"), True),
    "qwen3_moe": (("gate_proj", "up_proj", "down_proj"), True),
    "qwen3_next": (("gate_proj", "up_proj", "down_proj"), True),
    "olmoe": (("gate_proj", "up_proj", "down_proj"), True),
    "deepseek_v3": (("gate_proj", "up_proj", "down_proj"), False),
    "glm4_moe": (("gate_proj", "up_proj", "down_proj"), False),
}


@pytest.mark.parametrize("family", sorted(V4_FAMILIES))
def test_v4_per_expert_modules_convert_like_v5(family):
    """The v4 form of each block (ModuleList of MLPs; nn.Linear gate with top_k / norm_topk_prob on the
    block where v4 had that) converts to exactly the weights of the v5 block."""
    names, linear_gate = V4_FAMILIES[family]
    block = randomize(FAMILY[family].make())
    v5 = weights_from_hf(block)
    block.experts = nn.ModuleList(_V4Mlp(v5.w1[e], v5.w2[e], names) for e in range(v5.spec.num_experts))
    if linear_gate:
        gate = nn.Linear(v5.spec.hidden, v5.spec.num_experts, bias=False)
        gate.weight = nn.Parameter(v5.router.clone())
        block.gate, block.top_k = gate, v5.spec.top_k
        if family not in (
            "mixtral",
            "minimax",
        ):  # v4 Qwen / OLMoE blocks carried the flag; Mixtral's always renormalised
            block.norm_topk_prob = v5.spec.router.renormalize
    v4 = weights_from_hf(block)
    assert v4.spec == v5.spec
    assert all(torch.equal(v4.tensors()[n], t) for n, t in v5.tensors().items())
