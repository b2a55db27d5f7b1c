"""The tuner judges configs with the parity gate's own check: a config that corrupts a few rows
(tests/planted_rows.py: one row, one column block, the tail rows) is rejected though it is the fastest
and its whole-tensor error is within tolerance."""

import pytest
import test_tuning_fake_impl as fake
from planted_rows import BIG_T, KINDS, SPEC
from test_tuning_fake_impl import IMPL, PLANTED_KEY, installed

from moebench import registry
from moebench.parity import compare, expected_output
from moebench.tuning import trial, tuner
from moebench.tuning.buckets import check_tokens
from moebench.tuning.space import register_tunable, unregister_tunable
from moebench.weights import random_inputs, random_weights

PLANTS = [{**fake.FFN_DEFAULT, PLANTED_KEY: kind} for kind in KINDS]


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    with installed(tmp_path, monkeypatch) as folders:
        unregister_tunable(IMPL, "ffn")
        register_tunable(
            IMPL,
            "ffn",
            space=lambda spec, t: fake.ffn_space(spec, t) + PLANTS,
            default=lambda spec, t: dict(fake.FFN_DEFAULT),
        )
        yield folders


@pytest.mark.usefixtures("dirs")
@pytest.mark.parametrize("plant", PLANTS, ids=KINDS)
def test_each_plant_passes_the_whole_tensor_check_and_fails_the_tuners(plant):
    weights = random_weights(SPEC, seed=0)
    check = trial.ForwardCheck(registry.get(IMPL), weights, BIG_T, weights.device)
    check.prepare()
    reason = check({"ffn": plant})
    assert reason is not None and "worst row" in reason
    tokens = check_tokens(BIG_T)[-1]  # 18433: a tail of 1 row past the last 16-row block
    x = random_inputs(SPEC, tokens, seed=9)
    result = compare(fake.fake_tunable(x, weights, config={"ffn": plant}), expected_output(x, weights), SPEC.dtype)
    assert result.rel_l2 <= result.tolerance and not result.ok, result.message


def test_tuning_never_picks_a_row_corrupting_config(dirs):
    rows = tuner.tune(
        [SPEC], impls=[IMPL], buckets=[BIG_T], device="cpu", out_dir=dirs["user"], progress=False, max_configs=40
    )
    timed = [cfg for _, cfg in fake.CALLS]
    for plant in PLANTS:
        assert plant in timed, "each plant must have been timed for this test to mean anything"
    (ffn,) = [r for r in rows if r.kernel == "ffn"]
    assert ffn.status == "tuned" and PLANTED_KEY not in ffn.config
    assert ffn.rejected >= len(PLANTS)
