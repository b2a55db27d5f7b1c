"""Options and records of the gate's benchmark run (tests/benchmarks/test_gate_benchmarks.py)."""

import sys


def pytest_addoption(parser):
    parser.addoption(
        "--gate-cases",
        default=None,
        help="comma-separated impl/preset/T<tokens> cases to time instead of the CI set (e.g. a tiny set in tests)",
    )
    parser.addoption("--gate-passes", type=int, default=1, help="time every case this many times, list after list")


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Where every moebench module came from: the gate checks that each side ran its own library."""
    output_json["moebench_modules"] = {
        name: getattr(module, "__file__", None)
        for name, module in sorted(sys.modules.items())
        if name == "moebench" or name.startswith("moebench.")
    }
