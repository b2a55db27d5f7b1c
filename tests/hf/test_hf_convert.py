"""weights_from_hf on hand-built v4-style blocks, dtype conversion, and the clear refusals of what the spec
cannot state (each error names the attribute)."""

import pytest
import torch
from families import FAMILY, randomize
from torch import nn

from moebench import registry
from moebench.errors import MoEInputError
from moebench.hf import weights_from_hf

pytest.importorskip("transformers")


class _LegacyExpert(nn.Module):
    def __init__(self, h, i, names=("w1", "w3", "w2")):
        super().__init__()
        self.names = names
        setattr(self, names[0], nn.Linear(h, i, bias=False))
        setattr(self, names[1], nn.Linear(h, i, bias=False))
        setattr(self, names[2], nn.Linear(i, h, bias=False))
        self.act_fn = nn.SiLU()

    def forward(self, x):
        g, u, d = (getattr(self, n) for n in self.names)
        return d(self.act_fn(g(x)) * u(x))


class _LegacyBlock(nn.Module):
    """transformers v4 style: ModuleList of per-expert MLPs, nn.Linear gate, top_k on the block."""

    def __init__(self, h=20, i=12, e=5, k=2, names=("w1", "w3", "w2")):
        super().__init__()
        self.top_k = k
        self.gate = nn.Linear(h, e, bias=False)
        self.experts = nn.ModuleList([_LegacyExpert(h, i, names) for _ in range(e)])

    def forward(self, x):
        probs = self.gate(x).softmax(-1)
        w, ids = probs.topk(self.top_k, -1)
        w = w / w.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        for t in range(x.shape[0]):
            for s in range(self.top_k):
                out[t] += w[t, s] * self.experts[int(ids[t, s])](x[t])
        return out


@pytest.mark.parametrize("names", [("w1", "w3", "w2"), ("gate_proj", "up_proj", "down_proj")])
def test_legacy_per_expert_modules(names):
    block = _LegacyBlock(names=names).eval()
    weights = weights_from_hf(block)
    assert weights.spec.router.renormalize  # a v4 nn.Linear gate without a flag: Mixtral's, which renormalises
    x = torch.randn(7, 20)
    with torch.no_grad():
        torch.testing.assert_close(registry.get("naive_loop")(x, weights), block(x), rtol=1e-4, atol=1e-5)


def test_dtype_conversion():
    weights = weights_from_hf(randomize(FAMILY["mixtral"].make()), dtype="bf16")
    assert weights.spec.dtype is torch.bfloat16 and weights.w1.dtype is torch.bfloat16
    deepseek = weights_from_hf(randomize(FAMILY["deepseek_v3"].make()), dtype="bf16")
    assert deepseek.selection_bias.dtype is torch.float32  # only compared, never multiplied: stays fp32


def test_a_router_kept_wider_than_the_experts_is_rounded_with_a_warning():
    """DeepSeek-V3 / GLM-4.5 checkpoints keep gate.weight in fp32 in a bf16 model; the spec has one dtype."""
    block = randomize(FAMILY["deepseek_v3"].make()).to(torch.bfloat16)
    block.gate.weight = nn.Parameter(torch.randn(block.gate.weight.shape))
    with pytest.warns(UserWarning, match="gate.weight is torch.float32; rounded to torch.bfloat16"):
        weights = weights_from_hf(block)
    assert weights.router.dtype is torch.bfloat16


def test_unsupported_blocks_raise_clear_errors():
    with pytest.raises(MoEInputError, match="block: expected a torch.nn.Module"):
        weights_from_hf("not a module")
    block = _LegacyBlock()
    block.experts[0].act_fn = nn.GELU()
    with pytest.raises(MoEInputError, match="swiglu"):
        weights_from_hf(block)
    block = _LegacyBlock()
    block.gate = nn.Linear(20, 5, bias=True)
    with pytest.raises(MoEInputError, match="bias"):
        weights_from_hf(block)
    block = _LegacyBlock()
    del block.top_k
    with pytest.raises(MoEInputError, match="top_k"):
        weights_from_hf(block)
    block = _LegacyBlock()
    block.shared_expert_gate = nn.Linear(20, 1, bias=False)
    with pytest.raises(MoEInputError, match="shared_expert_gate: a gate without a shared_expert"):
        weights_from_hf(block)


def test_unknown_router_classes_are_refused_by_name():
    class MyRouter(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(5, 20))
            self.top_k = 2

    block = _LegacyBlock()
    block.gate = MyRouter()
    with pytest.raises(MoEInputError, match="unknown router class MyRouter"):
        weights_from_hf(block)


def test_experts_the_spec_cannot_state_are_refused():
    block = randomize(FAMILY["mixtral"].make())
    block.experts.has_post_expert_norm = True
    with pytest.raises(MoEInputError, match="has_post_expert_norm"):
        weights_from_hf(block)
    block = randomize(FAMILY["mixtral"].make())
    block.experts.has_gate = False
    with pytest.raises(MoEInputError, match="has_gate=False"):
        weights_from_hf(block)
    block = randomize(FAMILY["mixtral"].make())
    type(block.experts)._apply_gate, saved = (lambda self, x: x), type(block.experts)._apply_gate
    try:
        with pytest.raises(MoEInputError, match="has its own _apply_gate"):
            weights_from_hf(block)
    finally:
        type(block.experts)._apply_gate = saved


def test_clamped_experts_beside_a_shared_expert_are_refused():
    """The spec gives routed and shared experts one activation: gpt-oss experts with a shared MLP cannot be stated."""
    block = randomize(FAMILY["gpt_oss"].make())
    block.shared_expert = _LegacyExpert(40, 8, ("gate_proj", "up_proj", "down_proj"))
    with pytest.raises(MoEInputError, match="one activation"):
        weights_from_hf(block)
