"""The parity gate: run an implementation on fresh random inputs and compare with the fp64 reference.

Outputs are poisoned (NaN) before each run so unwritten elements show; NaN/Inf never pass; every
token row is checked as well as the whole tensor (moebench.parity.compare); near-tied routing is
accepted either way (moebench.parity.ties).

Quantised experts: the gate compares with the reference on the dequantised weights (reference_moe);
the error against the unquantised layer is reported beside it (extra["rel_l2_unquantized"]), never gated.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field

import torch

from moebench.parity.compare import Expected, ParityResult, compare
from moebench.parity.ties import expected_output
from moebench.reference import reference_unquantized
from moebench.registry import ImplInfo
from moebench.spec import MoESpec, dtype_name
from moebench.stats import collect_stats
from moebench.weights import MoEWeights, random_inputs, random_weights, steer_routing


def poisoned_like(x: torch.Tensor) -> torch.Tensor:
    """An output buffer full of NaN: any element an implementation fails to write stays NaN."""
    return torch.full_like(x, math.nan)


def poison_allocator(device: torch.device, nbytes: int) -> None:
    """On CUDA, fill and free a block so the caching allocator hands out NaN-filled scratch memory."""
    if device.type != "cuda" or nbytes <= 0:
        return
    block = torch.full((nbytes // 2 + 1,), math.nan, dtype=torch.float16, device=device)
    del block


@dataclass(frozen=True)
class Case:
    """One parity case: token count and how routing is steered."""

    name: str
    num_tokens: int
    always: tuple[int, ...] = ()
    never: tuple[int, ...] = ()


def edge_cases(spec: MoESpec, block: int = 16) -> list[Case]:
    """The gate's edge cases for a spec: T=0, T=1, T not a multiple of the block, empty experts,
    all tokens on one expert (k=E and odd sizes come from the presets themselves)."""
    e, k = spec.num_experts, spec.top_k
    cases = [
        Case("T=0", 0),
        Case("T=1", 1),
        Case(f"T={2 * block + 5}", 2 * block + 5),
    ]
    if e - k >= 1:
        never = tuple(range(e - 1, max(k, e // 2) - 1, -1))  # the upper experts get no token
        cases.append(Case(f"empty experts {list(never)}", 3 * block + 1, never=never))
    cases.append(Case("all tokens on expert 0", 2 * block + 3, always=(0,)))
    return cases


def random_cases(count: int, max_tokens: int = 64) -> list[Case]:
    """`count` cases with fresh random token counts (routing is random too)."""
    rng = secrets.SystemRandom()
    return [Case(f"random#{i}", rng.randint(1, max_tokens)) for i in range(count)]


@dataclass
class CaseOutcome:
    impl: str
    spec: MoESpec
    case: Case
    seed: int
    result: ParityResult | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.result is not None and self.result.ok

    @property
    def dtype(self) -> str:
        return dtype_name(self.spec.dtype)


def make_case_inputs(
    spec: MoESpec, case: Case, device: torch.device | str, seed: int
) -> tuple[MoEWeights, torch.Tensor]:
    weights = random_weights(spec, device=device, seed=seed)
    x = random_inputs(spec, case.num_tokens, device=device, seed=seed + 1)
    if case.always or case.never:
        weights, x = steer_routing(weights, x, always=case.always, never=case.never)
    return weights, x


def run_case(
    impl: ImplInfo,
    spec: MoESpec,
    case: Case,
    device: torch.device | str,
    seed: int | None = None,
    *,
    inputs: tuple[MoEWeights, torch.Tensor] | None = None,
    expected: Expected | None = None,
) -> CaseOutcome:
    """Fresh inputs (seed drawn at random unless given), poisoned output, compare with fp64.

    inputs / expected: (weights, x) already drawn for this case (with `seed`) and their fp64
    reference (moebench.parity.expected_output), shared by every implementation checked on them
    (moebench session), so large layers are drawn and their reference computed once, not once per
    implementation."""
    device = torch.device(device)
    seed = secrets.randbelow(2**31) if seed is None else seed
    outcome = CaseOutcome(impl.name, spec, case, seed)
    try:
        weights, x = inputs if inputs is not None else make_case_inputs(spec, case, device, seed)
    except Exception as exc:  # report, never crash the gate
        outcome.error = f"{type(exc).__name__}: {exc}"
        return outcome
    return check_on(impl, x, weights, outcome, expected)


def check_on(
    impl: ImplInfo, x: torch.Tensor, weights: MoEWeights, outcome: CaseOutcome, expected: Expected | None = None
) -> CaseOutcome:
    """Run `impl` on these inputs into a poisoned output and fill `outcome` with the comparison
    against the fp64 reference (near ties accepted either way, documented drops left out).
    `expected`: expected_output(x, weights) when the caller has it already (several implementations
    on the same inputs); recomputed for an implementation that reports dropped pairs."""
    spec, device = weights.spec, x.device
    try:
        out = poisoned_like(x)
        poison_allocator(device, 4 * x.numel() * spec.top_k * x.element_size() + (1 << 20))
        with collect_stats() as stats:
            result = impl(x, weights, out=out)
        keep = None
        if impl.drops_tokens and "dropped_pairs" in stats:
            # documented dropping: check against the reference without exactly the pairs it dropped
            keep = ~stats["dropped_pairs"]
            outcome.extra["note"] = (
                f"dropped {int(stats['num_dropped'])} of {x.shape[0] * spec.top_k} pairs (documented)"
            )
        if expected is None or keep is not None:
            expected = expected_output(x, weights, keep=keep)
        if result.data_ptr() != out.data_ptr() and out.numel():
            # implementations must write into `out` when given; a returned copy hides unwritten elements
            outcome.error = "implementation ignored out= (returned a different tensor)"
            return outcome
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        outcome.result = compare(result, expected, spec.dtype)
        if weights.quant is not None:  # what quantisation costs: the error against the unquantised layer
            plain = compare(result, reference_unquantized(x, weights, keep=keep), spec.dtype)
            outcome.extra["rel_l2_unquantized"] = plain.rel_l2
    except Exception as exc:  # report, never crash the gate
        outcome.error = f"{type(exc).__name__}: {exc}"
    return outcome
