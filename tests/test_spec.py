"""MoESpec, presets and weights: derived sizes and the canonical layout."""

import pytest
import torch

from moebench.errors import MoEInputError, UnknownImplementationError
from moebench.presets import PRESET_NAMES, REAL_PRESETS, TINY_PRESETS, get_preset, parse_shape, spec_label
from moebench.spec import MoESpec, RouterSpec, parse_dtype
from moebench.weights import MoEWeights, random_inputs, random_weights, steer_routing


def test_real_presets_have_the_models_shapes():
    shapes = {name: get_preset(name).shape for name in REAL_PRESETS}
    assert shapes == {
        "mixtral-8x7b": (8, 2, 4096, 14336),
        "qwen3-30b-a3b": (128, 8, 2048, 768),
        "deepseek-v3": (256, 8, 7168, 2048),
        "olmoe-1b-7b": (64, 8, 2048, 1024),
        "gpt-oss-20b": (32, 4, 2880, 2880),
    }
    assert get_preset("deepseek-v3").router.scoring == "sigmoid"
    assert get_preset("olmoe-1b-7b").router.renormalize is False


def test_tiny_presets_cover_the_edge_shapes():
    specs = [get_preset(n) for n in TINY_PRESETS]
    assert any(s.top_k == s.num_experts for s in specs), "k=E"
    assert any(s.hidden % 16 and s.intermediate % 16 for s in specs), "H and I not multiples of 16"
    assert {s.activation for s in specs} == {"swiglu", "gelu", "relu"}
    assert {s.router.scoring for s in specs} == {"softmax", "sigmoid"}


def test_flops_and_bytes():
    spec = get_preset("mixtral-8x7b")
    # 6 * T * k * H * I for swiglu: gate + up + down
    assert spec.flops(16) == 6 * 16 * 2 * 4096 * 14336
    assert spec.expert_weight_bytes(2) == 2 * 3 * 4096 * 14336 * 2
    gelu = get_preset("tiny-gelu")
    assert gelu.flops(3) == 4 * 3 * 1 * 40 * 72
    assert gelu.w1_rows == gelu.intermediate


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_experts=0, top_k=1, hidden=8, intermediate=8), "num_experts"),
        (dict(num_experts=4, top_k=5, hidden=8, intermediate=8), "top_k"),
        (dict(num_experts=4, top_k=0, hidden=8, intermediate=8), "top_k"),
        (dict(num_experts=4, top_k=2, hidden=-1, intermediate=8), "hidden"),
        (dict(num_experts=4, top_k=2, hidden=8, intermediate=2.5), "intermediate"),
        (dict(num_experts=4, top_k=2, hidden=8, intermediate=8, activation="tanh"), "activation"),
        (dict(num_experts=4, top_k=2, hidden=8, intermediate=8, dtype="int8"), "dtype"),
        (dict(num_experts=4, top_k=2, hidden=8, intermediate=8, router="softmax"), "router"),
    ],
)
def test_spec_rejects_bad_fields(kwargs, match):
    with pytest.raises(MoEInputError, match=match):
        MoESpec(**kwargs)


def test_router_spec_rejects_unknown_scoring():
    with pytest.raises(MoEInputError, match="router.scoring"):
        RouterSpec("tanh")


def test_dtype_parsing():
    assert parse_dtype("bf16") is torch.bfloat16
    assert parse_dtype("float16") is torch.float16
    assert parse_dtype(torch.float32) is torch.float32
    with pytest.raises(MoEInputError, match="dtype"):
        parse_dtype("fp8")


def test_unknown_preset_and_bad_shape():
    with pytest.raises(UnknownImplementationError, match="preset"):
        get_preset("mixtral-9x9")
    with pytest.raises(MoEInputError, match="shape"):
        parse_shape("8,2,4096")
    with pytest.raises(MoEInputError, match="shape"):
        parse_shape("8,2,a,b")
    assert parse_shape("8,2,64,32").shape == (8, 2, 64, 32)


def test_spec_label_names_presets():
    assert spec_label(get_preset("tiny", "fp32")) == "tiny"
    quantised = get_preset("tiny", "fp32").replace(quant="int4-g128")
    assert spec_label(quantised) == "tiny+int4-g128" and get_preset("tiny+int4-g128", "fp32") == quantised
    with pytest.raises(MoEInputError, match=r"preset 'tiny\+mxfp4': quant: mxfp4 needs"):
        get_preset("tiny+mxfp4")
    assert spec_label(parse_shape("7,3,64,32")) == "7,3,64,32"
    assert len(set(PRESET_NAMES)) == len(PRESET_NAMES)


def test_random_weights_are_seeded_and_scaled():
    spec = get_preset("tiny", "fp32")
    a, b, c = random_weights(spec, seed=3), random_weights(spec, seed=3), random_weights(spec, seed=4)
    assert torch.equal(a.w1, b.w1) and not torch.equal(a.w1, c.w1)
    assert a.w1.shape == (4, 96, 32) and a.w2.shape == (4, 32, 48) and a.router.shape == (4, 32)
    # fan-in scaling: std ~ H^-0.5 for w1
    assert abs(a.w1.std().item() - 32**-0.5) < 0.03
    assert torch.equal(a.w_gate, a.w1[:, :48]) and torch.equal(a.w_up, a.w1[:, 48:])
    x = random_inputs(spec, 5, seed=9)
    assert x.shape == (5, 32) and x.dtype == torch.float32


def test_weights_reject_wrong_layout():
    spec = get_preset("tiny", "fp32")
    w = random_weights(spec)
    with pytest.raises(MoEInputError, match=r"w1: expected shape \[4, 96, 32\]"):
        MoEWeights(spec, w.router, w.w1.transpose(1, 2), w.w2)
    with pytest.raises(MoEInputError, match="w2: expected dtype"):
        MoEWeights(spec, w.router, w.w1, w.w2.half())
    with pytest.raises(MoEInputError, match="router: expected a torch.Tensor"):
        MoEWeights(spec, None, w.w1, w.w2)
    with pytest.raises(MoEInputError, match="w_up"):
        _ = random_weights(get_preset("tiny-gelu", "fp32")).w_up


def test_steer_routing_forces_and_forbids_experts():
    from moebench.routing import route

    spec = get_preset("tiny-many", "fp32")
    w, x = steer_routing(random_weights(spec), random_inputs(spec, 50), always=(3,), never=(0, 1, 2))
    _, ids = route(x, w)
    assert bool((ids == 3).any(dim=1).all()), "expert 3 in every token's top-k"
    assert not bool(torch.isin(ids, torch.tensor([0, 1, 2])).any()), "experts 0-2 never chosen"
    with pytest.raises(MoEInputError, match="never"):
        steer_routing(random_weights(spec), random_inputs(spec, 2), never=tuple(range(13)))
