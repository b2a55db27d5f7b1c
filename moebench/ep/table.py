"""The traffic MODEL table of the real presets at expert-parallel sizes: what one layer's all-to-all would
move and cost per rank, for drawn routings, with and without redundant experts.

    python -m moebench.ep.table --out results/ep/

A MODEL, not a measurement (see moebench.ep.model for what it counts and how it turns bytes into time):
nothing here ran on a GPU or a network. Inputs, stated in every row and in the markdown: T tokens per
rank (data-parallel attention, each rank routes its own), bf16 activations as `ep_forward` sends them
(x row + int32 local id + fp32 weight per pair; y row back), contiguous placement, per-direction link
rates (Links), routings drawn uniform and zipf (stated exponent) over all P*T tokens. Redundant experts:
`Placement.with_redundant` adds up to R copies per rank, placed from the loads of the same routing (an
oracle: a deployment places them from past loads). A cell with fewer experts than ranks is left out
(`n/a`): contiguous placement needs E >= P. Single-device compute time is not shown: no GPU measurement
exists in this repository.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import platform
import shlex
import sys
from pathlib import Path

import torch
from tabulate import tabulate

import moebench
from moebench.ep.draws import draw_routing, expert_loads
from moebench.ep.model import Links, traffic_model
from moebench.ep.placement import Placement
from moebench.presets import REAL_PRESETS, get_preset
from moebench.results import write_rows

SOURCE = "MODEL (analytical, bandwidth only; not a measurement)"
COLUMNS = (
    "preset", "E", "k", "H", "dtype", "ep", "nodes", "tokens_per_rank", "routing", "zipf_s", "redundant_per_rank",
    "imbalance", "dispatch_MB_max", "combine_MB_max", "inter_node_fraction", "dispatch_ms", "combine_ms",
    "all_to_all_ms", "note", "intra_gbps_per_direction", "inter_gbps_per_direction", "gpus_per_node", "source",
)  # fmt: skip


def model_rows(
    presets: tuple[str, ...] = REAL_PRESETS,
    eps: tuple[int, ...] = (8, 16, 32, 64),
    tokens_per_rank: int = 2048,
    zipf_s: float = 1.2,
    redundant: tuple[int, ...] = (0, 1),
    links: Links | None = None,
    dtype: torch.dtype = torch.bfloat16,
    seed: int = 0,
) -> list[dict]:
    """One row per (preset, routing, EP, redundant copies per rank). Every EP size of a (preset, routing)
    uses the first P*T tokens of one draw of max(eps)*T tokens, so the sizes see the same tokens."""
    links = links or Links()
    rows = []
    for name in presets:
        spec = get_preset(name, dtype)
        for routing in ("uniform", "zipf"):
            _, all_ids = draw_routing(max(eps) * tokens_per_rank, spec.num_experts, spec.top_k, routing,
                                      zipf_s=zipf_s, seed=seed)  # fmt: skip
            for ep in eps:
                base = dict(preset=name, E=spec.num_experts, k=spec.top_k, H=spec.hidden, dtype=str(dtype)[6:], ep=ep)
                base.update(nodes=-(-ep // links.gpus_per_node), tokens_per_rank=tokens_per_rank, routing=routing)
                base.update(zipf_s=zipf_s if routing == "zipf" else "")
                for extra in redundant:
                    row = {**base, "redundant_per_rank": extra}
                    if spec.num_experts < ep:
                        rows.append(_finish(row, links, note=f"n/a: E={spec.num_experts} < P={ep}"))
                        continue
                    ids = all_ids[: ep * tokens_per_rank]
                    placement = Placement.contiguous(spec.num_experts, ep)
                    if extra:
                        placement = placement.with_redundant(expert_loads(ids, spec.num_experts), extra)
                    model = traffic_model(ids, [tokens_per_rank] * ep, placement, spec.hidden, dtype, links)
                    s = model.summary()
                    row.update(
                        imbalance=s["imbalance"],
                        dispatch_MB_max=s["dispatch_bytes_max"] / 1e6,
                        combine_MB_max=s["combine_bytes_max"] / 1e6,
                        inter_node_fraction=s["inter_node_fraction"],
                        dispatch_ms=1e3 * s["dispatch_s"],
                        combine_ms=1e3 * s["combine_s"],
                        all_to_all_ms=1e3 * s["all_to_all_s"],
                    )
                    rows.append(_finish(row, links))
    return rows


def _finish(row: dict, links: Links, note: str = "") -> dict:
    row.update(
        intra_gbps_per_direction=links.intra_gbps,
        inter_gbps_per_direction=links.inter_gbps,
        gpus_per_node=links.gpus_per_node,
        source=SOURCE,
    )
    return {c: row.get(c, note if c == "note" else "") for c in COLUMNS}


def provenance(argv: list[str]) -> dict[str, str]:
    """Date, command and versions of a table run (a model: no device)."""
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join(shlex.quote(a) for a in ["python", "-m", "moebench.ep.table", *argv]),
        "moebench": moebench.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def markdown(rows: list[dict], env: dict[str, str], links: Links, zipf_s: float, tokens: int) -> str:
    """The table as markdown, headed by what it is and its inputs."""
    shown = ("preset", "ep", "nodes", "routing", "redundant_per_rank", "imbalance", "dispatch_MB_max",
             "combine_MB_max", "inter_node_fraction", "dispatch_ms", "combine_ms", "all_to_all_ms", "note")  # fmt: skip
    head = [
        "# Expert-parallel all-to-all per MoE layer: MODEL",
        "",
        f"**{SOURCE}.** Produced by `{env['command']}` on {env['date']} (moebench {env['moebench']}, "
        f"torch {env['torch']}, Python {env['python']}); see `moebench/ep/table.py` and `moebench/ep/model.py`.",
        "",
        f"Inputs: {tokens} tokens per rank, bf16 activations; per pair dispatch sends the x row + int32 local id + "
        "fp32 router weight and combine returns the y row; pairs on the token's own rank are not traffic. "
        f"Links per GPU, PER DIRECTION: {links.intra_gbps:g} GB/s within a node of {links.gpus_per_node} GPUs "
        f"(NVLink 4 on H100/H200: 900 GB/s is both directions together) and {links.inter_gbps:g} GB/s across "
        "nodes; sends and receives run at once; a phase lasts as long as its slowest rank's slowest transfer "
        "(no latency, no overlap with compute). Routings drawn over all ranks' tokens: uniform, and zipf with "
        f"exponent s = {zipf_s:g} over experts in a seeded random order. Placement contiguous; redundant = extra "
        "expert copies per rank placed from the same routing's loads (an oracle). imbalance = max/mean pairs "
        "computed per rank. MB = 1e6 bytes a rank sends plus receives in the phase (the busiest rank). "
        "No single-device compute time is shown: nothing in this repository ran on a GPU.",
        "",
        "",
    ]
    body = []
    for r in rows:
        body.append([r[c] if not isinstance(r[c], float) else round(r[c], 4) for c in shown])
    return "\n".join(head) + tabulate(body, headers=list(shown), tablefmt="github") + "\n"


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="results/ep/", help="folder for ep-model.csv and ep-model.md")
    parser.add_argument("--tokens", type=int, default=2048, help="tokens per rank")
    parser.add_argument("--zipf-s", type=float, default=1.2, help="the zipf routing's exponent")
    parser.add_argument("--intra-gbps", type=float, default=Links.intra_gbps, help="per GPU, per direction")
    parser.add_argument("--inter-gbps", type=float, default=Links.inter_gbps, help="per GPU, per direction")
    parser.add_argument("--presets", type=lambda t: t.split(","), default=list(REAL_PRESETS))
    parser.add_argument("--ep", type=_sizes, default=[8, 16, 32, 64], help="EP sizes (ranks), comma-separated")
    args = parser.parse_args(argv)
    links = Links(args.intra_gbps, args.inter_gbps)
    rows = model_rows(tuple(args.presets), tuple(args.ep), args.tokens, args.zipf_s, links=links)
    env = provenance(argv)
    out = Path(args.out)
    write_rows(out / "ep-model.csv", [{**r, **env} for r in rows])
    (out / "ep-model.md").write_text(markdown(rows, env, links, args.zipf_s, args.tokens))
    print(f"wrote {out / 'ep-model.csv'} and {out / 'ep-model.md'} ({len(rows)} rows, {SOURCE})")


if __name__ == "__main__":
    main()
