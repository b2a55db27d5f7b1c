"""Side information an implementation reports about one call (e.g. dropped tokens).

with collect_stats() as stats:
    impl(x, weights)
stats.get("dropped_pairs")   # tensor, read after the call (no sync inside the layer)
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

# how an implementation ran the spec's shared experts (e.g. "grouped GEMMs (as extra experts)", "dense GEMM
# pair"): `moebench bench` writes it in the row's note
SHARED_STAT = "shared_experts"

_CURRENT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("moebench_stats", default=None)


def record_stat(name: str, value: Any) -> None:
    """Record `value` for the innermost collect_stats() block; a no-op outside one."""
    stats = _CURRENT.get()
    if stats is not None:
        stats[name] = value


@contextlib.contextmanager
def collect_stats() -> Iterator[dict[str, Any]]:
    stats: dict[str, Any] = {}
    token = _CURRENT.set(stats)
    try:
        yield stats
    finally:
        _CURRENT.reset(token)
