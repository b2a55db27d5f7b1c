"""Expert parallelism: the MoE layer across ranks with torch.distributed all-to-all (see layer.py),
what each rank holds and computes through any registry implementation (compute.py), its placements
(placement.py), per-rank measurements (measure.py), an analytical traffic MODEL (model.py) and its table
of the real presets (table.py), drawn routings (draws.py), a local multi-process launcher (launch.py)
and `moebench bench --ep P` (bench.py)."""

from moebench.ep.compute import (
    LocalCompute,
    RankLayer,
    local_unsupported,
    rank_layer,
    reference_local_compute,
    registry_local_compute,
    routed_reference,
    shared_output,
    slice_experts,
)
from moebench.ep.draws import draw_routing, expert_loads, imbalance
from moebench.ep.layer import ep_forward
from moebench.ep.measure import EPStats, summarize
from moebench.ep.model import Links, TrafficModel, pair_matrix, traffic_model
from moebench.ep.placement import Placement

__all__ = [
    "EPStats",
    "Links",
    "LocalCompute",
    "Placement",
    "RankLayer",
    "TrafficModel",
    "draw_routing",
    "ep_forward",
    "expert_loads",
    "imbalance",
    "local_unsupported",
    "pair_matrix",
    "rank_layer",
    "reference_local_compute",
    "registry_local_compute",
    "routed_reference",
    "shared_output",
    "slice_experts",
    "summarize",
    "traffic_model",
]
