"""The spec's options (router, expert, shared) and the weights they ask for: checks naming the field,
equality, JSON round trip, optional tensors present exactly when asked for, seeded draws."""

import pytest
import torch

from moebench.errors import MoEInputError
from moebench.presets import MODEL_PRESETS, PRESET_NAMES, PRESET_SOURCES, get_preset, spec_label
from moebench.routing import route
from moebench.spec import FEATURES, ExpertSpec, MoESpec, RouterSpec, SharedSpec, spec_from_dict
from moebench.weight_layout import TENSOR_NAMES, tensor_layout
from moebench.weights import MoEWeights, empty_weights, random_inputs, random_weights


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: RouterSpec(topk_groups=2), "router.topk_groups"),
        (lambda: RouterSpec(groups=0), "router.groups"),
        (lambda: RouterSpec("sigmoid", renormalize=False, softmax_after_topk=True), "router.softmax_after_topk"),
        (lambda: RouterSpec(softmax_after_topk=True), "router.renormalize"),
        (lambda: RouterSpec(scaling=0), "router.scaling"),
        (lambda: RouterSpec(scaling=float("nan")), "router.scaling"),
        (lambda: RouterSpec(weight_on="both"), "router.weight_on"),
        (lambda: RouterSpec(bias=1), "router.bias"),
        (lambda: ExpertSpec(swiglu_limit=-1), "expert.swiglu_limit"),
        (lambda: ExpertSpec(swiglu_alpha="1.7"), "expert.swiglu_alpha"),
        (lambda: SharedSpec(count=1), "shared.intermediate"),
        (lambda: SharedSpec(intermediate=8), "shared.count"),
        (lambda: SharedSpec(count=-1, intermediate=8), "shared.count"),
        (
            lambda: MoESpec(6, 2, 8, 8, router=RouterSpec(groups=4, topk_groups=2)),
            "router.groups",
        ),  # 4 does not divide 6
        (lambda: MoESpec(4, 1, 8, 8, router=RouterSpec(groups=4, topk_groups=2)), "router.groups"),  # 1 expert a group
        (lambda: MoESpec(8, 5, 8, 8, router=RouterSpec(groups=4, topk_groups=2)), "top_k"),  # only 4 allowed
        (lambda: MoESpec(4, 2, 8, 8, activation="gelu", expert=ExpertSpec(swiglu_limit=7.0)), "expert.swiglu_limit"),
        (lambda: MoESpec(4, 2, 8, 8, activation="relu", expert=ExpertSpec(swiglu_alpha=2)), "expert.swiglu_alpha"),
        (lambda: MoESpec(4, 2, 8, 8, shared="yes"), "shared"),
    ],
)
def test_bad_options_are_refused_naming_the_field(make, match):
    with pytest.raises(MoEInputError, match=match.replace(".", r"\.")):
        make()


def test_group_limit_allows_exactly_the_chosen_groups_experts():
    spec = MoESpec(8, 4, 8, 8, router=RouterSpec(groups=4, topk_groups=2))  # k = 2 groups x 2 experts
    assert spec.features() == {"router.groups"}
    assert MoESpec(8, 8, 8, 8, router=RouterSpec(groups=8, topk_groups=8)).features() == frozenset()  # no limit


def test_equality_hash_and_json_round_trip_of_every_preset():
    for name in PRESET_NAMES:
        spec = get_preset(name, "fp32")
        again = spec_from_dict(spec.to_json())
        assert again == spec and hash(again) == hash(spec) and spec_label(again) == name
    assert get_preset("gpt-oss-20b") != get_preset("gpt-oss-20b").replace(expert=ExpertSpec())
    assert RouterSpec(scaling=2) == RouterSpec(scaling=2.0)
    old_record = {"num_experts": 4, "top_k": 2, "hidden": 8, "intermediate": 8, "activation": "relu", "dtype": "fp32"}
    assert spec_from_dict({**old_record, "router": {"scoring": "sigmoid"}}).router.scoring == "sigmoid"
    with pytest.raises(MoEInputError, match="spec"):
        spec_from_dict({"num_experts": 4})


def test_real_presets_state_the_published_layers():
    """The numbers of each model preset (sources in PRESET_SOURCES; see the report for the files)."""
    want = {
        "deepseek-v3": ((256, 8, 7168, 2048), dict(groups=8, topk_groups=4, scaling=2.5), (1, 2048, False)),
        "kimi-k2": ((384, 8, 7168, 2048), dict(groups=1, topk_groups=1, scaling=2.827), (1, 2048, False)),
        "glm-4.5-air": ((128, 8, 4096, 1408), dict(groups=1, topk_groups=1, scaling=1.0), (1, 1408, False)),
        "qwen1.5-moe-a2.7b": ((60, 4, 2048, 1408), dict(scoring="softmax", renormalize=False), (1, 5632, True)),
        "llama4-scout": ((16, 1, 5120, 8192), dict(scoring="sigmoid", weight_on="input"), (1, 8192, False)),
        "gpt-oss-20b": ((32, 4, 2880, 2880), dict(softmax_after_topk=True, bias=True), (0, 0, False)),
        "gpt-oss-120b": ((128, 4, 2880, 2880), dict(softmax_after_topk=True, bias=True), (0, 0, False)),
    }
    for name, (shape, router, shared) in want.items():
        spec = get_preset(name)
        assert spec.shape == shape, name
        assert all(getattr(spec.router, key) == value for key, value in router.items()), name
        assert (spec.shared.count, spec.shared.intermediate, spec.shared.gated) == shared, name
    for name in ("deepseek-v3", "kimi-k2", "glm-4.5-air"):
        r = get_preset(name).router
        assert (r.scoring, r.selection_bias, r.renormalize) == ("sigmoid", True, True), name
    for name in ("gpt-oss-20b", "gpt-oss-120b"):
        assert get_preset(name).expert == ExpertSpec(1.702, 7.0, 1.0, bias=True)
    assert set(PRESET_SOURCES) == set(MODEL_PRESETS) and len(MODEL_PRESETS) == 10


def test_features_name_every_option_once():
    used = set()
    for name in PRESET_NAMES:
        used |= get_preset(name).features()
    assert used == set(FEATURES), "the presets exercise every option"
    assert get_preset("tiny").features() == frozenset()
    assert (
        "groups=2/4" in get_preset("tiny-groups").describe()
        and "shared=2x36+gate" in get_preset("tiny-shared").describe()
    )


def test_weights_hold_the_optional_tensors_exactly_when_asked():
    for name in PRESET_NAMES:
        spec = get_preset(name, "fp32")
        layout = tensor_layout(spec)
        w = empty_weights(spec, "meta")
        assert set(w.tensors()) == set(layout), name
        assert all(tuple(t.shape) == layout[n][0] and t.dtype == layout[n][1] for n, t in w.tensors().items())
    spec = get_preset("tiny-oss", "fp32")
    w = random_weights(spec)
    with pytest.raises(MoEInputError, match=r"b1: expected a torch.Tensor of shape \[5, 56\] \(expert.bias is on\)"):
        MoEWeights(spec, w.router, w.w1, w.w2, router_bias=w.router_bias, b2=w.b2)
    with pytest.raises(MoEInputError, match="shared_w1: expected None"):
        w.with_tensors(shared_w1=torch.zeros(1, 2, 3))
    with pytest.raises(MoEInputError, match="router_bias: expected dtype"):
        w.with_tensors(router_bias=w.router_bias.double())
    with pytest.raises(MoEInputError, match="selection_bias: expected dtype torch.float32"):
        random_weights(get_preset("tiny-groups", "bf16")).with_tensors(
            selection_bias=torch.zeros(12, dtype=torch.bfloat16)
        )
    with pytest.raises(MoEInputError, match="tensors: unknown"):
        w.with_tensors(bias=None)


def test_parameters_to_and_with_parameters_cover_the_optional_tensors():
    spec = get_preset("tiny-groups", "bf16")
    w = random_weights(spec)
    assert w.parameter_names() == ("router", "w1", "w2", "shared_w1", "shared_w2")  # selection bias only picks
    assert set(TENSOR_NAMES) >= set(w.tensors()) and "selection_bias" in w.tensors()
    moved = w.to(dtype=torch.float64)
    assert moved.spec == spec.with_dtype(torch.float64) and moved.shared_w1.dtype == torch.float64
    assert moved.selection_bias.dtype == torch.float32
    leaves = [p.double().requires_grad_(True) for p in w.parameters()]
    w64 = w.with_parameters(leaves)
    assert w64.spec.dtype == torch.float64 and w64.shared_w2 is leaves[4] and w64.selection_bias is w.selection_bias
    with pytest.raises(MoEInputError, match="values"):
        w.with_parameters(leaves[:2])


def test_random_weights_draw_seeded_nonzero_biases_that_change_the_choice():
    spec = get_preset("tiny-oss", "fp32")
    a, b = random_weights(spec, seed=3), random_weights(spec, seed=3)
    assert all(torch.equal(a.tensors()[n], b.tensors()[n]) for n in a.tensors())
    plain = random_weights(MoESpec(5, 2, 36, 28, dtype=torch.float32), seed=3)
    assert torch.equal(a.w1, plain.w1) and torch.equal(a.router, plain.router), "the plain tensors come first"
    for name in ("router_bias", "b1", "b2"):
        t = a.tensors()[name]
        assert bool((t != 0).all()) and 0.01 < float(t.abs().mean()) < 1, name
    groups = get_preset("tiny-groups", "fp32")
    w, x = random_weights(groups, seed=5), random_inputs(groups, 200, seed=6)
    without = w.with_tensors(selection_bias=torch.zeros_like(w.selection_bias))
    changed = (route(x, w).ids.sort(-1).values != route(x, without).ids.sort(-1).values).any(-1)
    assert 0.1 < float(changed.float().mean()) < 1, "the drawn selection bias changes some tokens' experts"


def test_experts_subset_is_a_plain_local_layer():
    w = random_weights(get_preset("tiny-groups", "fp32"))
    local = w.experts_subset(torch.tensor([5, 1, 5]))
    assert local.spec.num_experts == 3 and local.spec.top_k == 1 and local.spec.features() == frozenset()
    assert local.shared_w1 is None and local.selection_bias is None
    assert torch.equal(local.w1[0], w.w1[5]) and torch.equal(local.router[1], w.router[1])
    llama = random_weights(get_preset("tiny-input-scaled", "fp32")).experts_subset(torch.tensor([2]))
    assert llama.spec.features() == {"router.weight_on"}
