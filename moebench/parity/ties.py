"""Near-tied routing: the other expert choices a correct implementation may make, as reference rows.

The reference selects experts on the same fp32 router logits every implementation computes
(moebench.reference). Where a token's k-th and (k+1)-th experts are closer than fp32 can tell apart,
an implementation that computes the same logits in another summation order (ONNX Runtime's MatMul,
cuBLAS's mixed-precision mm) or rounds the scores to the same value (sigmoid(18) == sigmoid(19) in
fp32) may pick either. Two experts a, b of a token x are a near tie when, in fp32,

    |logit_a - logit_b| <= TIE_LOGIT_RTOL * ||x|| * max(||router_a||, ||router_b||)   or
    |score_a - score_b| <= TIE_SCORE_ULPS * ulp(max(score_a, score_b))

(moebench/tolerances.py: the first bounds the rounding of a length-H fp32 dot product, whose terms
sum in magnitude to at most ||x|| ||router_e||; the second the rounding of the scores themselves).
For such a token every choice of k experts that keeps the ones clearly above the boundary and fills
the rest from the tied band is acceptable; its fp64 row is computed here, and the gate accepts an
output row that matches any of them. Everywhere else the choice must be the reference's. The scores
compared are the ones top-k selects on (selection bias added, experts outside the best groups at -inf);
a near tie between two groups' scores is not detected: group-limited routing must separate its groups.
"""

from __future__ import annotations

import itertools

import torch

from moebench.parity.compare import Expected
from moebench.reference import reference_from_routing, reference_moe
from moebench.routing import Routing, route, router_logits, router_scores, selection_scores, weights_at
from moebench.tolerances import TIE_LOGIT_RTOL, TIE_SCORE_ULPS
from moebench.weights import MoEWeights

MAX_CHOICES_PER_TOKEN = 64  # other acceptable choices enumerated per near-tied token (more: counted as truncated)


def expected_output(x: torch.Tensor, weights: MoEWeights, keep: torch.Tensor | None = None) -> Expected:
    """The fp64 reference of x (moebench.reference.reference_moe, `keep` as there) and the rows of
    the other acceptable choices for near-tied tokens: what `moebench.parity.compare` checks against."""
    with torch.no_grad():
        scale = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        slack = torch.zeros_like(scale) if weights.quant is not None and weights.quant.fmt.act_group else None
        ref = reference_moe(x, weights, keep=keep, row_scale=scale, row_slack=slack)
        tokens, ids, truncated = tie_choices(x, weights)
        if tokens.numel() == 0:
            return Expected(ref, truncated=truncated, row_scale=scale, row_slack=slack)
        dropped = None
        if keep is not None:  # the expert ids of dropped pairs, else -1: [T, k]
            dropped = torch.where(keep.to(x.device), -1, route(x, weights).ids)[tokens]
        rows = _rows(x[tokens], weights, ids, dropped)
    return Expected(ref, rows, tokens, truncated, scale, slack)


def near_tie_bands(x: torch.Tensor, weights: MoEWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen [T, E] bool: the fp32 router's top-k, band [T, E] bool: the experts in a near tie
    with the token's k-th expert, that expert included)."""
    spec = weights.spec
    logits = router_logits(x, weights.router, bias=weights.router_bias)  # [T, E] fp32, as every implementation
    scores = selection_scores(router_scores(logits, spec), spec, weights.selection_bias)  # what top-k selects on
    ids = torch.topk(scores, spec.top_k, dim=-1, sorted=True).indices  # moebench.routing.route's choice
    chosen = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, ids, True)
    last = ids[:, -1:]  # [T, 1] the k-th expert
    x_norm = torch.linalg.vector_norm(x.to(torch.float64), dim=1, keepdim=True)  # [T, 1]
    r_norm = torch.linalg.vector_norm(weights.router.to(torch.float64), dim=1)  # [E]
    slack = TIE_LOGIT_RTOL * x_norm * torch.maximum(r_norm[None, :], r_norm[last])
    logit_gap = (logits.to(torch.float64) - logits.gather(1, last).to(torch.float64)).abs()
    top = torch.maximum(scores, scores.gather(1, last))
    ulp = torch.nextafter(top, torch.full_like(top, torch.inf)) - top
    band = (logit_gap <= slack) | ((scores - scores.gather(1, last)).abs() <= TIE_SCORE_ULPS * ulp)
    return chosen, band


def tie_choices(x: torch.Tensor, weights: MoEWeights) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(tokens [N] int64, ids [N, k] int64: every other acceptable choice of near-tied tokens, one
    row each; truncated: near-tied tokens with more than MAX_CHOICES_PER_TOKEN other choices)."""
    spec = weights.spec
    empty = torch.empty(0, dtype=torch.int64, device=x.device)
    if x.shape[0] == 0 or spec.top_k == spec.num_experts:
        return empty, empty.reshape(0, spec.top_k), 0
    chosen, band = near_tie_bands(x, weights)
    tied = torch.nonzero((band & ~chosen).any(dim=1)).flatten().tolist()
    tokens, choices, truncated = [], [], 0
    chosen, band = chosen.cpu(), band.cpu()
    for t in tied:
        fixed = torch.nonzero(chosen[t] & ~band[t]).flatten().tolist()  # clearly above the tie: always chosen
        members = torch.nonzero(band[t]).flatten().tolist()
        primary = set(torch.nonzero(chosen[t] & band[t]).flatten().tolist())
        combos = (c for c in itertools.combinations(members, spec.top_k - len(fixed)) if set(c) != primary)
        picked = list(itertools.islice(combos, MAX_CHOICES_PER_TOKEN + 1))
        truncated += len(picked) > MAX_CHOICES_PER_TOKEN
        for combo in picked[:MAX_CHOICES_PER_TOKEN]:
            tokens.append(t)
            choices.append(fixed + list(combo))
    if not tokens:
        return empty, empty.reshape(0, spec.top_k), truncated
    return torch.tensor(tokens, device=x.device), torch.tensor(choices, device=x.device), truncated


def _rows(xs: torch.Tensor, weights: MoEWeights, ids: torch.Tensor, dropped: torch.Tensor | None) -> torch.Tensor:
    """fp64 rows [N, H] of tokens xs [N, H] routed to experts ids [N, k]; experts in `dropped` [N, k]
    (pairs the implementation reported dropping) contribute nothing, as in the reference."""
    spec = weights.spec
    logits = router_logits(xs, weights.router, compute_dtype=torch.float64, bias=weights.router_bias)
    topk_weights = weights_at(router_scores(logits, spec), ids, spec)
    if dropped is not None:
        topk_weights = topk_weights * ~(ids[:, :, None] == dropped[:, None, :]).any(-1)
    return reference_from_routing(xs, weights, Routing(topk_weights, ids))
