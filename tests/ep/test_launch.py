"""The local launcher returns results in rank order, reports failed ranks and never hangs."""

from __future__ import annotations

import time

import pytest
from ep_cases import fail_on_last_rank, sleep_forever

from moebench.ep.launch import run_ranks


def test_failure_names_the_failing_rank():
    with pytest.raises(RuntimeError, match="rank 1 fails on purpose"):
        run_ranks(fail_on_last_rank, 2, timeout_s=60)


def test_a_stuck_rank_is_killed_at_the_time_limit():
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="sleep_forever"):
        run_ranks(sleep_forever, 2, timeout_s=3)
    assert time.monotonic() - start < 60
