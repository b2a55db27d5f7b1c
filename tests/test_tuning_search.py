"""The coarse-to-fine search on synthetic landscapes (no layer runs): caps, rejection, ordering."""

import math

import pytest

from moebench.tuning.search import Search, SearchAborted, complete, tile_groups
from moebench.tuning.space import configs

SPACE = configs(BLOCK_M=[16, 32, 64, 128], BLOCK_N=[32, 64, 128], num_warps=[2, 4, 8], num_stages=[2, 3, 4])
DEFAULT = {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3}
OPTIMUM = {"BLOCK_M": 32, "BLOCK_N": 128, "num_warps": 8, "num_stages": 4}


def bowl(config: dict) -> float:
    """A smooth landscape with its minimum at OPTIMUM (log2 distance, tiles weigh more)."""
    return 1.0 + sum(
        (2.0 if key.startswith("BLOCK") else 0.5) * abs(math.log2(config[key]) - math.log2(OPTIMUM[key]))
        for key in OPTIMUM
    )


def always_ok(config):
    return None


def test_coarse_to_fine_finds_the_optimum_timing_a_fraction_of_the_space():
    result = Search(SPACE, DEFAULT, bowl, max_configs=40).run(always_ok)
    assert result.best == OPTIMUM
    assert result.tried <= 40 < len(SPACE)
    assert result.default_ms == bowl(DEFAULT)
    assert result.trials[0].config == DEFAULT, "the default is timed first"


def test_max_configs_caps_the_trials_and_says_so():
    result = Search(SPACE, DEFAULT, bowl, max_configs=5).run(always_ok)
    assert result.tried == 5
    assert result.stopped_by == "max-configs"
    assert result.best_ms == min(t.ms for t in result.trials)


def test_zero_budget_times_only_the_default():
    result = Search(SPACE, DEFAULT, bowl, budget_s=0.0).run(always_ok)
    assert [t.config for t in result.trials] == [DEFAULT]
    assert result.stopped_by == "budget"
    assert result.best == DEFAULT


def test_failing_configs_are_skipped_for_the_next_fastest():
    wrong = {**OPTIMUM}

    def accept(config):
        return "parity: wrong" if config == wrong else None

    result = Search(SPACE, DEFAULT, bowl, max_configs=60).run(accept)
    assert result.best != wrong
    assert result.best_ms > bowl(wrong)
    assert (wrong, "parity: wrong") in result.rejected


def test_a_config_that_raises_while_timed_or_checked_is_rejected():
    def measure(config):
        if config["BLOCK_M"] == 32:
            raise RuntimeError("out of resources")
        return bowl(config)

    def accept(config):
        if config["num_warps"] == 8:
            raise ValueError("checker blew up")
        return None

    result = Search(SPACE, DEFAULT, measure, max_configs=60).run(accept)
    assert result.best["BLOCK_M"] != 32 and result.best["num_warps"] != 8
    reasons = [reason for _, reason in result.rejected]
    assert any("out of resources" in r for r in reasons)
    assert any("checker blew up" in r for r in reasons)


def test_nothing_passes_means_no_winner():
    result = Search(SPACE, DEFAULT, bowl, max_configs=10).run(lambda c: "always wrong")
    assert result.best is None and result.best_ms is None
    assert len(result.rejected) == result.tried


def test_search_aborted_propagates():
    def measure(config):
        raise SearchAborted("illegal memory access")

    with pytest.raises(SearchAborted):
        Search(SPACE, DEFAULT, measure).run(always_ok)


def test_candidates_are_completed_from_the_default_and_deduplicated():
    partial = [{"BLOCK_M": 16}, {"BLOCK_M": 16}, dict(DEFAULT)]
    assert complete(partial, DEFAULT) == [DEFAULT, {**DEFAULT, "BLOCK_M": 16}]


def test_tile_groups_start_near_the_default_and_lead_with_the_default_schedule():
    groups = tile_groups(complete(SPACE, DEFAULT), DEFAULT)
    assert len(groups) == 4 * 3
    assert groups[0][0] == DEFAULT
    for group in groups:
        tiles = {(c["BLOCK_M"], c["BLOCK_N"]) for c in group}
        assert len(tiles) == 1
        assert (group[0]["num_warps"], group[0]["num_stages"]) == (4, 3)


def test_a_space_without_tile_parameters_is_searched_whole():
    space = [{"path": "grouped"}, {"path": "decode"}]
    result = Search(space, {"path": "grouped"}, lambda c: 1.0 if c["path"] == "decode" else 2.0).run(always_ok)
    assert result.best == {"path": "decode"}
    assert result.tried == 2
