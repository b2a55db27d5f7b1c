"""How close correct implementations come to the parity gate's limits: the property test's random problems
(tests/test_parity_props.py) over many seeds, every torch implementation, the worst error as a fraction of
its limit (the whole-tensor or the row check, whichever is closer) per dtype, and any failure in full.

    python scripts/parity_margins.py --seeds 200:230      # about 35 CPU s a seed on a 2-core EPYC

The README's "Parity gate" section quotes its output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_parity_props as props  # noqa: E402  (the draws live with the test)

from moebench import registry  # noqa: E402
from moebench.parity import Case, CaseOutcome, check_on, expected_output  # noqa: E402

IMPLS = ("naive_loop", "padded_batch", "padded_batch_capacity", "grouped_mm")


def fraction_of_limit(result) -> float:
    whole = 0.0 if "not gated" in result.message else result.rel_l2 / result.tolerance
    return max(whole, result.row_error / result.row_tolerance)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0:10", help="START:STOP, the property test's seeds to draw from")
    args = parser.parse_args(argv)
    start, _, stop = args.seeds.partition(":")
    torch.set_num_threads(1)
    infos = [registry.get(name) for name in IMPLS]
    worst: dict[str, tuple] = {}
    failures = 0
    for seed in range(int(start), int(stop)):
        props.SEED = seed
        for dtype in props.DTYPES:
            for i, (spec, tokens, input_seed) in enumerate(props.draw_cases(dtype)):
                weights, x = props.draw_inputs(spec, tokens, input_seed, "cpu")
                expected = expected_output(x, weights)
                for info in infos:
                    if info.spec_unsupported(spec):
                        continue
                    case = CaseOutcome(info.name, spec, Case("random", tokens), input_seed)
                    outcome = check_on(info, x, weights, case, expected)
                    what = f"seed {seed} case {i} {info.name} {spec.describe()} T={tokens}"
                    if outcome.result is None or not outcome.ok:
                        failures += 1
                        print(f"FAIL {what}: {outcome.error or outcome.result}", flush=True)
                    if outcome.result is None:
                        continue
                    frac = fraction_of_limit(outcome.result)
                    name = props.dtype_name(dtype)
                    if frac > worst.get(name, (0.0,))[0]:
                        worst[name] = (frac, what, outcome.result.message)
        print(f"seed {seed}: " + ", ".join(f"{k} {v[0]:.2f}" for k, v in worst.items()), flush=True)
    for name, (frac, what, message) in worst.items():
        print(f"worst {name}: {frac:.2f} of the limit, {what}: {message}")
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
