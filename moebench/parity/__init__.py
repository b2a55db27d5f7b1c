"""The parity gate: every implementation against the one fp64 reference.

compare.py: one output against the reference (non-finite values, whole tensor, every token row);
ties.py: the reference rows of near-tied routing choices, accepted either way;
gate.py: cases, poisoned outputs, running an implementation and judging it.
"""

from moebench.parity.compare import Expected, ParityResult, compare
from moebench.parity.gate import (
    Case,
    CaseOutcome,
    check_on,
    edge_cases,
    make_case_inputs,
    poison_allocator,
    poisoned_like,
    random_cases,
    run_case,
)
from moebench.parity.ties import expected_output

__all__ = [
    "Case",
    "CaseOutcome",
    "Expected",
    "ParityResult",
    "check_on",
    "compare",
    "edge_cases",
    "expected_output",
    "make_case_inputs",
    "poison_allocator",
    "poisoned_like",
    "random_cases",
    "run_case",
]
