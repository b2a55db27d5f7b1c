"""The per-row gate: a few wrong rows among many fail `verify`, though their whole-tensor error passes.

Planted errors (tests/planted_rows.py) at T = 16384 in bf16: one wrong row, one wrong 16-column
block of one row, the wrong tail rows after the last full block. Each stays under the whole-tensor
tolerance (the check the gate had alone before) and fails the row check, which names the row.
"""

import math

import pytest
import torch
from planted_rows import BIG_T, KINDS, SPEC, TAIL_T, corrupt, planted_row

from moebench import registry
from moebench.cli import main
from moebench.parity import Case, Expected, compare, run_case
from moebench.tolerances import ROW_FLOOR


@pytest.fixture
def planted_impls():
    naive = registry.get("naive_loop")
    names = []
    for kind in KINDS:

        def planted(x, w, *, out=None, config=None, kind=kind):
            y = corrupt(kind, naive(x, w, check=False), x, w)
            return y if out is None else out.copy_(y)

        names.append(f"planted_{kind}")
        registry.register(names[-1], kind="peer", description=f"test: planted wrong {kind}")(planted)
    yield names
    for name in names:
        registry.unregister(name)


def _tokens(kind: str) -> int:
    return TAIL_T if kind == "tail" else BIG_T


@pytest.mark.parametrize("kind", KINDS)
def test_planted_error_fails_verify_and_only_the_row_check_catches_it(planted_impls, kind):
    tokens = _tokens(kind)
    outcome = run_case(registry.get(f"planted_{kind}"), SPEC, Case(f"T={tokens}", tokens), "cpu", seed=5)
    assert outcome.error is None and not outcome.ok
    res = outcome.result
    assert math.isfinite(res.rel_l2) and res.rel_l2 <= res.tolerance, "the whole-tensor check alone passes it"
    assert res.row_error > res.row_tolerance
    if kind == "tail":
        assert tokens - tokens % 16 <= res.worst_row < tokens
    else:
        assert res.worst_row == planted_row(tokens)
    assert f"worst row {res.worst_row}: rel err {res.row_error:.2e}" in res.message
    assert f"at ({res.worst_row}," in res.message or kind == "tail", "the worst element is in the planted row"


def test_the_same_case_passes_without_the_plant():
    outcome = run_case(registry.get("naive_loop"), SPEC, Case(f"T={TAIL_T}", TAIL_T), "cpu", seed=5)
    assert outcome.ok, outcome.result


def test_verify_cli_fails_a_planted_row_and_names_it(planted_impls, capsys):
    shape = ",".join(str(v) for v in SPEC.shape)
    argv = ["verify", "--device", "cpu", "--impl", "planted_row", "--shape", shape, "--dtype", "bf16"]
    assert main([*argv, "--tokens", str(BIG_T), "--cases", "0", "--seed", "3"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and f"worst row {planted_row(BIG_T)}" in out


def test_row_error_is_relative_to_a_floor_for_near_zero_rows():
    ref = torch.ones(4, 8, dtype=torch.float64)
    ref[1] = 1e-9  # a near-zero row: its rounding error is relative to the typical row, not to itself
    out = ref.clone()
    out[1] += 1e-6
    rms = float(ref.norm()) / 2
    result = compare(out, ref, torch.float32)
    assert result.worst_row == 1
    assert result.row_error == pytest.approx(1e-6 * 8**0.5 / (ROW_FLOOR * rms))
    assert result.ok
    out[1] = 0.5  # garbage of a typical row's size in a row that should be ~0
    assert not compare(out, ref, torch.float32).ok


def test_a_row_may_match_any_acceptable_alternative():
    ref = torch.randn(3, 5, dtype=torch.float64)
    other = torch.randn(1, 5, dtype=torch.float64)
    out = ref.clone()
    out[2] = other[0]
    assert not compare(out, ref, torch.float32).ok
    accepted = compare(out, Expected(ref, other, torch.tensor([2])), torch.float32)
    assert accepted.ok and accepted.ties == 1 and accepted.rel_l2 == 0
    assert not compare(out, Expected(ref, other, torch.tensor([1])), torch.float32).ok, "only for its own token"


def test_non_finite_values_name_their_rows():
    ref = torch.ones(5, 4, dtype=torch.float64)
    out = ref.clone()
    out[3, 1:] = math.nan
    result = compare(out, ref, torch.float32)
    assert not result.ok and result.worst_row == 3
    assert "3 non-finite or unwritten elements in 1 row(s)" in result.message
