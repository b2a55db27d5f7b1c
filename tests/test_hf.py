"""Conversion from Hugging Face transformers MoE blocks (built locally, tiny, no download)."""

import pytest
import torch
from torch import nn

from moebench import registry
from moebench.errors import MoEInputError
from moebench.hf import weights_from_hf
from moebench.parity import compare
from moebench.reference import reference_moe

transformers = pytest.importorskip("transformers")


def _mixtral():
    from transformers import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    cfg = MixtralConfig(hidden_size=32, intermediate_size=40, num_local_experts=4, num_experts_per_tok=2)
    return MixtralSparseMoeBlock(cfg)


def _qwen3(norm):
    from transformers import Qwen3MoeConfig
    from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock

    cfg = Qwen3MoeConfig(
        hidden_size=24, moe_intermediate_size=20, num_experts=6, num_experts_per_tok=3, norm_topk_prob=norm
    )
    return Qwen3MoeSparseMoeBlock(cfg)


def _olmoe():
    from transformers import OlmoeConfig
    from transformers.models.olmoe.modeling_olmoe import OlmoeSparseMoeBlock

    cfg = OlmoeConfig(hidden_size=16, intermediate_size=24, num_experts=8, num_experts_per_tok=2)
    return OlmoeSparseMoeBlock(cfg)


def _init(block):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * p.shape[-1] ** -0.5)
    return block.eval()


@pytest.mark.parametrize(
    "make",
    [_mixtral, lambda: _qwen3(True), lambda: _qwen3(False), _olmoe],
    ids=["mixtral", "qwen3-norm", "qwen3-plain", "olmoe"],
)
def test_converted_weights_match_the_modules_own_forward(make):
    block = _init(make())
    weights = weights_from_hf(block)
    spec = weights.spec
    x = torch.randn(13, spec.hidden)
    with torch.no_grad():
        expected = block(x[None])[0]
    assert compare(expected, reference_moe(x, weights), torch.float32).ok
    ours = registry.get("naive_loop")(x, weights)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


def test_renormalisation_flag_is_read():
    assert weights_from_hf(_init(_qwen3(False))).spec.router.renormalize is False
    assert weights_from_hf(_init(_qwen3(True))).spec.router.renormalize is True
    assert weights_from_hf(_init(_mixtral())).spec.router.renormalize is True


def test_dtype_conversion():
    weights = weights_from_hf(_init(_mixtral()), dtype="bf16")
    assert weights.spec.dtype is torch.bfloat16 and weights.w1.dtype is torch.bfloat16


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
    """transformers v4 style: ModuleList of per-expert MLPs, nn.Linear gate."""

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
    x = torch.randn(7, 20)
    with torch.no_grad():
        torch.testing.assert_close(registry.get("naive_loop")(x, weights), block(x), rtol=1e-4, atol=1e-5)


def test_unsupported_blocks_raise_clear_errors():
    with pytest.raises(MoEInputError, match="block: expected a torch.nn.Module"):
        weights_from_hf("not a module")
    block = _LegacyBlock()
    block.shared_expert = nn.Linear(2, 2)
    with pytest.raises(MoEInputError, match="shared experts"):
        weights_from_hf(block)
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
