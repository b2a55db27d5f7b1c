"""w8a8 formats (fp8-block128) quantise the activation h to e4m3 inside the layer. An implementation computes h
in fp32, the reference in fp64; where h lies on an e4m3 rounding boundary the two may round to neighbouring
codes, both correctly: the reference's row slack (moebench.activations._requant_slack) is how far that can move
a row, and the gate accepts a row's error up to it (moebench.parity.compare). Random layers showed it (a sweep
of seeds on a 2-core AMD EPYC, not part of the suite: its verdicts would depend on the CPU's fp32 sums):
naive_loop on small-32x4 in fp32 (T=64) failed 2 seeds of 12 without it, none with it; a planted wrong token
row or a 2% error on 8 elements of one row still failed 30 seeds of 30."""

import torch

import moebench
from moebench.activations import expert_ffn
from moebench.parity import Expected, compare


def _layer(second: float):
    """tiny-relu's expert on one token x = e_0: h = relu(x @ w1.T) = [448, second, 0, ...], one group with
    scale 448 / 448 = 1; w2 reads h_1 only, with weight 2."""
    spec = moebench.get_preset("tiny-relu", "fp32")
    h, i = spec.hidden, spec.intermediate
    x = torch.zeros(1, h, dtype=torch.float64)
    x[0, 0] = 1.0
    w1 = torch.zeros(i, h, dtype=torch.float64)
    w1[0, 0], w1[1, 0] = 448.0, second
    w2 = torch.zeros(h, i, dtype=torch.float64)
    w2[0, 1] = 2.0
    return spec, x, w1, w2


def test_an_activation_on_a_rounding_boundary_gets_one_code_step_of_slack():
    spec, x, w1, w2 = _layer(1.0625)  # halfway between the e4m3 codes 1.0 and 1.125
    slack = []
    expert_ffn(spec, x, w1, w2, act_group=128, requant_slack=slack)
    torch.testing.assert_close(slack[0], torch.tensor([0.125 * 2.0], dtype=torch.float64))  # step x scale x |W2|


def test_activations_off_the_boundaries_get_none():
    for second in (1.0, 1.09375, 3.0):  # a code, a quarter step from the boundary, a code
        spec, x, w1, w2 = _layer(second)
        slack = []
        expert_ffn(spec, x, w1, w2, act_group=128, requant_slack=slack)
        assert float(slack[0][0]) == 0.0, second


def test_the_gate_accepts_a_row_error_up_to_its_slack_and_no_more():
    ref = torch.ones(4, 8, dtype=torch.float64)
    scale = torch.full((4,), 3.0, dtype=torch.float64)
    slack = torch.tensor([0.0, 0.25, 0.0, 0.0], dtype=torch.float64)
    expected = Expected(ref, row_scale=scale, row_slack=slack)
    out = ref.clone()
    out[1, 3] += 0.25  # a flipped code's worth in the row that has the slack
    assert compare(out, expected, torch.float32).ok
    out[1, 3] += 0.01  # beyond it: 0.01 / 3 > the fp32 row limit
    assert not compare(out, expected, torch.float32).ok
    out = ref.clone()
    out[2, 3] += 0.25  # the same error in a row without slack
    assert not compare(out, expected, torch.float32).ok
