"""One output against what a correct one may be: non-finite values, whole-tensor and per-row errors.

`compare(out, expected, dtype)` fails an output when any element is NaN/Inf (unwritten elements
stay NaN: outputs are poisoned before a run), when its relative L2 error (each row's norm floored at
CANCEL_FLOOR of the size of its terms) exceeds the dtype's REL_L2_TOLERANCE (outputs of at least
MIN_AVERAGED elements), or when any token row's
error, relative to the size of the terms the row sums, exceeds ROW_TOLERANCE (moebench/tolerances.py).
The row check is what catches a few wrong rows among many: one fully wrong row in T moves the
whole-tensor error by only ~1/sqrt(T).
`expected` is the fp64 reference tensor, or an `Expected` that also holds the other acceptable
rows of tokens whose routing is a near tie (moebench.parity.ties): such a row passes when it
matches any of them; and, for formats that quantise activations, each row's requantisation slack, which
its error may exceed the tolerance by (both checks: the whole-tensor error sums the rows' errors beyond it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from moebench.tolerances import CANCEL_FLOOR, MIN_AVERAGED, ROW_FLOOR, row_tolerance, tolerance


@dataclass(frozen=True)
class Expected:
    """The fp64 reference `ref` [T, H] (the fp32 router's choice of experts) and, for tokens whose
    k-th and (k+1)-th scores are a near tie, the rows of the other acceptable choices:
    alt_rows [N, H] fp64, alt_tokens [N] int64 (the token each row belongs to)."""

    ref: torch.Tensor
    alt_rows: torch.Tensor | None = None
    alt_tokens: torch.Tensor | None = None
    truncated: int = 0  # near-tied tokens with more acceptable choices than were enumerated
    # [T] fp64: the size of the terms each reference row sums (moebench.reference.reference_from_routing);
    # the row check's scale, ||ref_t|| where not given
    row_scale: torch.Tensor | None = None
    # [T] fp64: how far a correct row may be from ref_t because activations a w8a8 format quantises lay on
    # e4m3 rounding boundaries (moebench.activations._requant_slack); subtracted from each row's error
    row_slack: torch.Tensor | None = None

    @property
    def num_ties(self) -> int:
        """Tokens with a near-tied routing (accepted either way)."""
        return 0 if self.alt_tokens is None else int(torch.unique(self.alt_tokens).numel())


@dataclass(frozen=True)
class ParityResult:
    ok: bool
    rel_l2: float
    max_abs: float
    worst_index: tuple[int, ...] | None
    tolerance: float
    message: str
    row_error: float = 0.0  # the worst token row's relative error (outputs only)
    worst_row: int | None = None
    row_tolerance: float = math.inf
    ties: int = 0  # tokens with near-tied routing, accepted either way

    def __str__(self) -> str:
        return self.message


def compare(
    out: torch.Tensor, expected: torch.Tensor | Expected, dtype: torch.dtype, *, grad: bool = False
) -> ParityResult:
    """`out` against the fp64 reference (a tensor or an Expected). Outputs (grad=False) are checked
    per token row too; gradients (weight gradients have no token rows) on the whole tensor only."""
    if not isinstance(expected, Expected):
        expected = Expected(expected)
    tol = tolerance(dtype, grad=grad)
    row_tol = math.inf if grad else row_tolerance(dtype)
    ref = expected.ref
    if tuple(out.shape) != tuple(ref.shape):
        return ParityResult(False, math.inf, math.inf, None, tol, f"shape {list(out.shape)} != {list(ref.shape)}")
    if out.numel() == 0:
        return ParityResult(True, 0.0, 0.0, None, tol, "empty output (T=0)", row_tolerance=row_tol)
    out64 = out.detach().to(torch.float64)
    ref64 = ref.detach().to(torch.float64)
    bad = ~torch.isfinite(out64)
    if bool(bad.any()):
        idx = tuple(int(i) for i in torch.nonzero(bad)[0].tolist())
        rows = int(bad.reshape(bad.shape[0], -1).any(dim=1).sum()) if bad.dim() else 1
        message = f"{int(bad.sum())} non-finite or unwritten elements in {rows} row(s), first at {idx}"
        return ParityResult(False, math.nan, math.nan, idx, tol, message, math.nan, idx[0] if idx else None, row_tol)
    ties = expected.num_ties
    row_err = None
    if not grad and out64.dim() == 2:
        ref64, row_err = _best_rows(out64, ref64, expected)
    diff = (out64 - ref64).abs()
    flat = int(torch.argmax(diff))
    idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), diff.shape))
    max_abs = float(diff.max())
    rel = _relative(_error_norm(out64, ref64, expected, grad), _tensor_norm(ref64, expected, grad))
    worst_row, row_error = None, 0.0
    if row_err is not None:
        worst_row = int(torch.argmax(row_err))
        row_error = float(row_err[worst_row])
    # a whole-tensor error is an average: an output of a few elements is the row check's alone
    averaged = row_err is None or out64.numel() >= MIN_AVERAGED
    ok = (rel <= tol or not averaged) and row_error <= row_tol
    msg = f"rel_l2={rel:.2e} (tol {tol:.0e}{'' if averaged else f'; not gated below {MIN_AVERAGED} elements'})"
    if worst_row is not None:
        msg += f", worst row {worst_row}: rel err {row_error:.2e} (limit {row_tol:.0e})"
    msg += f", worst |diff|={max_abs:.3e} at {idx}: got {float(out64[idx]):.5g}, expected {float(ref64[idx]):.5g}" + (
        f"; {ties} near-tied token(s) accepted either way" if ties else ""
    )
    return ParityResult(ok, rel, max_abs, idx, tol, msg, row_error, worst_row, row_tol, ties)


def _tensor_norm(ref64: torch.Tensor, expected: Expected, grad: bool) -> float:
    """The whole-tensor error's denominator: ||ref||, each row's norm floored at CANCEL_FLOOR * s_t
    where the reference gives s_t (a row whose terms cancel still rounds on the scale of its terms)."""
    if grad or expected.row_scale is None or ref64.dim() != 2:
        return float(torch.linalg.vector_norm(ref64))
    rows = torch.linalg.vector_norm(ref64, dim=1)
    floor = CANCEL_FLOOR * expected.row_scale.to(ref64.device, torch.float64)
    return float(torch.linalg.vector_norm(torch.maximum(rows, floor)))


def _error_norm(out64: torch.Tensor, ref64: torch.Tensor, expected: Expected, grad: bool) -> float:
    """||out - ref||, each row's error less its requantisation slack (not below 0) where the reference gives one."""
    if grad or expected.row_slack is None or ref64.dim() != 2:
        return float(torch.linalg.vector_norm(out64 - ref64))
    rows = torch.linalg.vector_norm(out64 - ref64, dim=1)
    return float(torch.linalg.vector_norm((rows - expected.row_slack.to(rows.device, torch.float64)).clamp_min(0)))


def _relative(err: float, norm: float) -> float:
    return err / norm if norm > 0 else (0.0 if err == 0 else math.inf)


def _row_errors(out: torch.Tensor, rows: torch.Tensor, scale: torch.Tensor, slack: torch.Tensor | None) -> torch.Tensor:
    """(||out_t - rows_t|| - slack_t)^+ / scale_t per row (0 where they are equal)."""
    err = torch.linalg.vector_norm(out - rows, dim=1)
    if slack is not None:
        err = (err - slack).clamp_min(0)
    return torch.where(err == 0, torch.zeros_like(err), err / scale)


def _best_rows(out64: torch.Tensor, ref64: torch.Tensor, expected: Expected) -> tuple[torch.Tensor, torch.Tensor]:
    """(the acceptable row nearest to each output row [T, H], the row errors [T] against it)."""
    num_tokens = ref64.shape[0]
    floor = ROW_FLOOR * float(torch.linalg.vector_norm(ref64)) / math.sqrt(num_tokens)
    scale = expected.row_scale
    scale = torch.linalg.vector_norm(ref64, dim=1) if scale is None else scale.to(ref64.device, torch.float64)
    scale = scale.clamp_min(floor)
    slack = None if expected.row_slack is None else expected.row_slack.to(ref64.device, torch.float64)
    row_err = _row_errors(out64, ref64, scale, slack)
    if expected.alt_tokens is None or expected.alt_tokens.numel() == 0:
        return ref64, row_err
    tokens = expected.alt_tokens.to(ref64.device)
    alt = expected.alt_rows.to(device=ref64.device, dtype=torch.float64)
    # the other choices sum terms of about the same size (the tied experts' weights are equal)
    alt_err = _row_errors(out64[tokens], alt, scale[tokens], None if slack is None else slack[tokens])
    best = row_err.scatter_reduce(0, tokens, alt_err, reduce="amin")
    better = (alt_err < row_err[tokens]) & (alt_err == best[tokens])
    ref64 = ref64.clone()
    ref64[tokens[better]] = alt[better]
    return ref64, best
