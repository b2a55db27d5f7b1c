"""Which spec options (moebench.spec.FEATURES) each ONNX lowering expresses; pure Python (no onnx import), so
the deployed implementations' registrations read it too. Options not listed are refused, never exported wrong.
Both lowerings express every option today; what com.microsoft.MoE cannot compute for a given spec (exact GELU,
input weighting with k > 1) is refused by export/ort_fused.py's unsupported_reason with the reason.
"""

from __future__ import annotations

from moebench.spec import FEATURES, MoESpec

EXPORTED_FEATURES: dict[str, frozenset[str]] = {"portable": frozenset(FEATURES), "ort-fused": frozenset(FEATURES)}
NOT_EXPORTED_NOTE = "not yet in the ONNX export"


def unexported_features(spec: MoESpec, flavor: str) -> str | None:
    """Why the `flavor` lowering cannot export `spec` (options it does not express yet), or None."""
    missing = sorted(spec.features() - EXPORTED_FEATURES[flavor])
    return f"{', '.join(missing)}: {NOT_EXPORTED_NOTE}" if missing else None
