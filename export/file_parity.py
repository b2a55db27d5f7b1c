"""Parity of an exported model against moebench.reference, on inputs the export never saw.

Nothing is traced at export, so there is no "export-time routing" to bake in; these cases make
sure of it by running the exported graph on
  * fresh random inputs at several token counts (T=1, 5, 37 by default), and
  * inputs steered towards chosen experts (x moved so that those experts' logits are +strength and the
    others' -strength, or pushed along their router rows when E > H), so the routing pattern is one that
    random inputs rarely produce (all tokens on the same experts, the other experts empty). The steered
    routing is checked to have happened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from moebench.parity import ParityResult, compare
from moebench.reference import reference_moe
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
    """x moved so that every token's router logits are +strength at `experts` and -strength elsewhere (the
    smallest such move, when the E router rows are independent: E <= H), else x plus `strength` units
    along the (normalised) router rows of `experts`; in x's dtype. Exact logits are what steers sigmoid
    scores with a selection bias or group limits, where pushing only the chosen rows saturates the others too."""
    router = weights.router.to(torch.float64).cpu()
    x64 = x.to(torch.float64).cpu()
    e, h = router.shape
    if e <= h:
        target = torch.full((e,), -strength, dtype=torch.float64)
        target[list(experts)] = strength
        if weights.router_bias is not None:
            target = target - weights.router_bias.to(torch.float64).cpu()
        delta = torch.linalg.lstsq(router, (target[:, None] - router @ x64.t())).solution.t()  # [T, H]
        return (x64 + delta).to(device=x.device, dtype=x.dtype)
    push = torch.zeros(h, dtype=torch.float64)
    for expert in experts:
        push += router[expert] / router[expert].norm() ** 2  # raises the expert's logit by ~1 per unit
    return (x64 + strength * push).to(device=x.device, dtype=x.dtype)


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
        _, ids = route(steered, weights)
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
            results.append(
                CaseResult(case.name, case.x.shape[0], compare(out, reference_moe(case.x, weights), weights.spec.dtype))
            )
        except Exception as exc:  # report, never crash the check
            results.append(CaseResult(case.name, case.x.shape[0], None, f"{type(exc).__name__}: {exc}"))
    return results
