"""Parity of an exported model against moebench.reference, on inputs the export never saw.

Nothing is traced at export, so there is no "export-time routing" to bake in; these cases make
sure of it by running the exported graph on
  * fresh random inputs at several token counts (T=1, 5, 37 by default), and
  * inputs steered towards chosen experts (x pushed along those experts' router rows), so the
    routing pattern is one that random inputs rarely produce (all tokens on the same experts,
    the other experts empty). The steered routing is checked to have happened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from moebench.parity import ParityResult, compare, expected_output
from moebench.routing import route
from moebench.weights import MoEWeights, random_inputs

DEFAULT_TOKENS = (1, 5, 37)


@dataclass(frozen=True)
class InputCase:
    name: str
    x: torch.Tensor
    expect_experts: tuple[int, ...] = ()  # steered: every token's top-k must be exactly these


@dataclass(frozen=True)
class CaseResult:
    case: str
    num_tokens: int
    result: ParityResult | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.ok and not self.error


def steer_inputs(weights: MoEWeights, x: torch.Tensor, experts: tuple[int, ...], strength: float = 8.0) -> torch.Tensor:
    """x plus `strength` units along the (normalised) router rows of `experts`, in x's dtype."""
    router = weights.router.to(torch.float32).cpu()
    push = torch.zeros(router.shape[1])
    for e in experts:
        push += router[e] / router[e].norm() ** 2  # raises expert e's logit by ~1 per unit
    steered = x.to(torch.float32).cpu() + strength * push
    return steered.to(device=x.device, dtype=x.dtype)


def input_cases(weights: MoEWeights, tokens=DEFAULT_TOKENS, seed: int = 1, *, empty: bool = True) -> list[InputCase]:
    """T=0 (when `empty`), random inputs at each T, plus two steered patterns at the largest T."""
    spec = weights.spec
    cases = [InputCase("empty T=0", random_inputs(spec, 0, device=weights.device))] if empty else []
    cases += [InputCase(f"random T={t}", random_inputs(spec, t, device=weights.device, seed=seed + t)) for t in tokens]
    t = max(tokens)
    first = tuple(range(spec.top_k))
    last = tuple(range(spec.num_experts - spec.top_k, spec.num_experts))
    for experts in dict.fromkeys((first, last)):
        base = random_inputs(spec, t, device=weights.device, seed=seed + 1000 + experts[0])
        x = _steer_until_routed(weights, base, experts)
        if x is not None:
            cases.append(InputCase(f"steered to experts {list(experts)} T={t}", x, experts))
    return cases


def _steer_until_routed(weights: MoEWeights, x: torch.Tensor, experts: tuple[int, ...]) -> torch.Tensor | None:
    for strength in (8.0, 32.0, 128.0):
        steered = steer_inputs(weights, x, experts, strength)
        _, ids = route(steered, weights.router, weights.spec)
        if bool((ids.sort(dim=-1).values == torch.tensor(sorted(experts), device=ids.device)).all()):
            return steered
    return None  # router rows too correlated to isolate these experts: case left out


def check_cases(
    run: Callable[[torch.Tensor], torch.Tensor], weights: MoEWeights, cases: list[InputCase]
) -> list[CaseResult]:
    """Run every case through `run` (x -> y) and compare with the fp64 reference."""
    results = []
    for case in cases:
        try:
            out = run(case.x)
            result = compare(out, expected_output(case.x, weights), weights.spec.dtype)
            results.append(CaseResult(case.name, case.x.shape[0], result))
        except Exception as exc:  # report, never crash the check
            results.append(CaseResult(case.name, case.x.shape[0], None, f"{type(exc).__name__}: {exc}"))
    return results
