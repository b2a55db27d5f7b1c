"""The parity gate itself: it passes correct implementations and fails broken ones loudly."""

import subprocess
import sys
import textwrap

import pytest
import torch

from moebench import registry
from moebench.cli import main
from moebench.parity import Case, compare, edge_cases, run_case
from moebench.presets import get_preset
from moebench.tolerances import REL_L2_TOLERANCE


def _register(name, fn, **kwargs):
    registry.register(name, kind="peer", description="test", **kwargs)(fn)


@pytest.fixture
def broken_impls():
    naive = registry.get("naive_loop")

    def off_by_a_bit(x, w, *, out=None, config=None):
        y = naive(x, w, check=False)
        y = y * 1.05  # 5% error: passes nowhere
        return y if out is None else out.copy_(y)

    def leaves_last_row_unwritten(x, w, *, out=None, config=None):
        y = naive(x, w, check=False)
        if out is None:
            return y
        out[:-1] = y[:-1]  # the poison (NaN) in the last row shows
        return out

    def returns_a_copy(x, w, *, out=None, config=None):
        return naive(x, w, check=False)  # ignores out=: unwritten elements would hide

    def drops_slot_one(x, w, *, out=None, config=None):
        spec = w.spec
        w2 = type(w)(spec.replace(top_k=1), w.router, w.w1, w.w2)  # silently uses only the top-1 expert
        y = naive(x, w2, check=False)
        return y if out is None else out.copy_(y)

    fns = {
        "broken_scaled": off_by_a_bit,
        "broken_unwritten": leaves_last_row_unwritten,
        "broken_copy": returns_a_copy,
        "broken_drops": drops_slot_one,
    }
    for name, fn in fns.items():
        _register(name, fn)
    yield list(fns)
    for name in fns:
        registry.unregister(name)


def test_verify_passes_builtins_on_all_tiny_presets(capsys):
    assert (
        main(["verify", "--device", "cpu", "--impl", "naive_loop,padded_batch,padded_batch_capacity", "--quiet"]) == 0
    )
    assert "all passed" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["broken_scaled", "broken_unwritten", "broken_copy", "broken_drops"])
def test_verify_fails_deliberately_broken_impl(broken_impls, name, capsys):
    code = main(["verify", "--device", "cpu", "--impl", name, "--preset", "tiny", "--dtype", "fp32", "--cases", "1"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL" in out and "FAILED" in out


def test_unwritten_elements_are_reported_as_such(broken_impls):
    spec = get_preset("tiny", "fp32")
    outcome = run_case(registry.get("broken_unwritten"), spec, Case("T=9", 9), "cpu")
    assert not outcome.ok
    assert "non-finite or unwritten" in outcome.result.message


def test_exception_in_impl_is_a_failure_not_a_crash():
    def raises(x, w, *, out=None, config=None):
        raise RuntimeError("kernel exploded")

    _register("broken_raises", raises)
    try:
        outcome = run_case(registry.get("broken_raises"), get_preset("tiny", "fp32"), Case("T=3", 3), "cpu")
        assert not outcome.ok and "kernel exploded" in outcome.error
    finally:
        registry.unregister("broken_raises")


def test_compare_never_passes_nan_or_inf():
    ref = torch.randn(4, 8, dtype=torch.float64)
    for bad in (float("nan"), float("inf")):
        out = ref.clone().float()
        out[2, 3] = bad
        result = compare(out, ref, torch.float32)
        assert not result.ok and result.worst_index == (2, 3)


def test_compare_reports_worst_element_and_rel_l2():
    ref = torch.ones(3, 4, dtype=torch.float64)
    out = ref.clone()
    out[1, 2] = 1.5
    result = compare(out, ref, torch.float64)
    assert not result.ok
    assert result.worst_index == (1, 2)
    assert result.rel_l2 == pytest.approx(0.5 / 12**0.5)


def test_tolerance_table_is_ordered_by_precision():
    t = REL_L2_TOLERANCE
    assert t[torch.float64] < t[torch.float32] < t[torch.float16] < t[torch.bfloat16] <= 2e-2


def test_edge_cases_cover_the_standard_list():
    names = [c.name for c in edge_cases(get_preset("tiny-many"))]
    assert "T=0" in names and "T=1" in names and "all tokens on expert 0" in names
    assert any(n.startswith("empty experts") for n in names)
    assert any(c.num_tokens % 16 for c in edge_cases(get_preset("tiny-many")) if c.num_tokens > 1)


def test_unknown_impl_is_a_clear_cli_error(capsys):
    assert main(["verify", "--device", "cpu", "--impl", "nope"]) == 2
    assert "unknown implementation 'nope'" in capsys.readouterr().err


def test_an_implementation_named_but_unavailable_fails_and_says_why(capsys):
    code = main(["verify", "--device", "cpu", "--impl", "naive_loop,vllm_fused", "--preset", "tiny", "--cases", "0"])
    out = capsys.readouterr().out
    assert code == 1
    assert "vllm_fused  FAILED: asked for with --impl but unavailable" in out
    assert "1 failure(s)" in out


def test_bad_device_is_a_clear_cli_error(capsys):
    assert main(["verify", "--device", "tpu"]) == 2
    assert "argument --device: invalid choice: 'tpu'" in capsys.readouterr().err


def test_plugin_entry_point_registers_and_broken_plugin_fails_gate(tmp_path):
    """A third-party package registers through the entry-point group; the gate catches its bug."""
    (tmp_path / "moebench_test_plugin.py").write_text(
        textwrap.dedent(
            """
            from moebench.registry import register, get

            @register("plugin_broken", kind="peer", description="third-party plugin with a sign bug")
            def plugin_broken(x, weights, *, out=None, config=None):
                y = -get("naive_loop")(x, weights, check=False)
                return y if out is None else out.copy_(y)
            """
        )
    )
    dist = tmp_path / "moebench_test_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: moebench-test-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[moebench.implementations]\nplugin_broken = moebench_test_plugin\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    listing = subprocess.run(
        [sys.executable, "-m", "moebench", "list", "--device", "cpu"], capture_output=True, text=True, env=env
    )
    assert listing.returncode == 0, listing.stderr
    assert "plugin_broken" in listing.stdout
    gate = subprocess.run(
        [
            sys.executable,
            "-m",
            "moebench",
            "verify",
            "--device",
            "cpu",
            "--impl",
            "plugin_broken",
            "--preset",
            "tiny",
            "--dtype",
            "fp32",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert gate.returncode == 1
    assert "FAILED" in gate.stdout
