"""The static kernel gate's rules (moebench.compile_check.baseline), on made-up compilation figures:
what fails, what is new, what is gone, and the margins. Compiling for real: test_kernel_gate_compile.py."""

from __future__ import annotations

import dataclasses
import json

import pytest

from moebench.compile_check.baseline import (
    INSTRUCTION_MARGIN,
    REGISTER_MARGIN,
    baseline_path,
    baseline_versions,
    compare,
    to_json,
)
from moebench.compile_check.cubin import ptxas_figures, sass_instructions
from moebench.compile_check.ptxas import CompiledLaunch
from moebench.compile_check.sweep import Site
from moebench.kernels.common.hopper import SMEM_LIMIT_BYTES

GEMM = Site("mixtral-8x7b", "triton_grouped", 1024, "grouped_gate_up_kernel", 0)
COMBINE = Site("mixtral-8x7b", "triton_grouped", 1024, "combine_kernel", 0)


def _launch(name: str, variant: str, **figures) -> CompiledLaunch:
    base = dict(shared_bytes=65536, registers=128, spill_stores=0, spill_loads=0, instructions=1000)
    return CompiledLaunch(name, variant, {"BLOCK_M": 128}, uses_wgmma=True, **{**base, **figures})


def _baseline() -> dict:
    compiled = {"gemm#a": _launch("grouped_gate_up_kernel", "gemm#a"), "comb#b": _launch("combine_kernel", "comb#b")}
    return json.loads(json.dumps(to_json(compiled, {GEMM: "gemm#a", COMBINE: "comb#b"}, {"triton": "x"})))


def _verdict(gemm: CompiledLaunch | str):
    """The verdict when the GEMM's site compiles to `gemm` and the combine is unchanged."""
    compiled = {"gemm#a": gemm, "comb#b": _launch("combine_kernel", "comb#b")}
    return compare(_baseline(), compiled, {GEMM: "gemm#a", COMBINE: "comb#b"}, lambda site: True)


def test_unchanged_figures_pass():
    verdict = _verdict(_launch("grouped_gate_up_kernel", "gemm#a"))
    assert not verdict.failures and not verdict.new and not verdict.gone
    assert verdict.drift == (0.0, 0.0)


@pytest.mark.parametrize(
    "figures, failing",
    [
        ({"spill_stores": 4}, "spills"),
        ({"spill_loads": 4}, "spills"),
        ({"shared_bytes": SMEM_LIMIT_BYTES + 1}, "shared memory"),
        ({"registers": 128 + REGISTER_MARGIN + 1}, "registers"),
        ({"instructions": int(1000 * (1 + INSTRUCTION_MARGIN)) + 8}, "SASS instructions"),
    ],
)
def test_each_rule_fails_its_site(figures, failing):
    verdict = _verdict(_launch("grouped_gate_up_kernel", "gemm#a", **figures))
    assert len(verdict.failures) == 1
    ((message, sites),) = verdict.failures.items()
    assert failing in message and sites == [GEMM]


def test_rises_within_the_margins_pass_and_falls_are_counted():
    within = _launch("grouped_gate_up_kernel", "gemm#a", registers=128 + REGISTER_MARGIN, instructions=1096)
    assert not _verdict(within).failures
    lower = _verdict(_launch("grouped_gate_up_kernel", "gemm#a", registers=120, instructions=900))
    assert not lower.failures and lower.lower == 1 and lower.drift == (pytest.approx(-0.1), 0.0)


def test_a_site_compiled_to_another_variant_is_compared_with_what_the_site_recorded():
    """A forced config (or a new constexpr) changes the variant; the site's recorded figures still hold."""
    compiled = {"gemm#z": _launch("grouped_gate_up_kernel", "gemm#z", instructions=2000)}
    compiled["comb#b"] = _launch("combine_kernel", "comb#b")
    verdict = compare(_baseline(), compiled, {GEMM: "gemm#z", COMBINE: "comb#b"}, lambda site: True)
    (message,) = verdict.failures
    assert "recorded as gemm#a" in message and "1000 -> 2000" in message


def test_a_compile_error_fails():
    verdict = _verdict("PTXASError: ptxas failed")
    assert any("does not compile" in message for message in verdict.failures)


def test_new_kernels_are_new_unrecorded_sites_of_known_kernels_fail_and_missing_sites_are_gone():
    new_site = Site("mixtral-8x7b", "triton_grouped", 1024, "fresh_kernel", 0)
    extra_site = Site("mixtral-8x7b", "triton_grouped", 16, "combine_kernel", 0)
    compiled = {"new#c": _launch("fresh_kernel", "new#c"), "comb#b": _launch("combine_kernel", "comb#b")}
    sites = {new_site: "new#c", COMBINE: "comb#b", extra_site: "comb#b"}
    verdict = compare(_baseline(), compiled, sites, lambda site: True)
    assert list(verdict.new) == ["new#c: a kernel the baseline does not know"]
    assert [sites for sites in verdict.failures.values()] == [[extra_site]]
    assert verdict.gone == [str(GEMM)]
    narrowed = compare(_baseline(), compiled, sites, lambda site: site.kernel != GEMM.kernel)
    assert narrowed.gone == []  # a site the sweep did not cover is not gone


def test_a_new_kernel_still_must_not_spill():
    new_site = Site("mixtral-8x7b", "block_sparse", 1024, "fresh_kernel", 0)
    compiled = {
        "new#c": _launch("fresh_kernel", "new#c", spill_stores=8),
        "comb#b": _launch("combine_kernel", "comb#b"),
    }
    verdict = compare(_baseline(), compiled, {new_site: "new#c", COMBINE: "comb#b"}, lambda site: site != GEMM)
    assert any("spills" in message for message in verdict.failures)


def test_site_names_round_trip():
    site = Site("deepseek-v3", "block_sparse", 16384, "combine_kernel", 1)
    assert str(site) == "deepseek-v3/block_sparse/16384/combine_kernel#1"
    assert Site.parse(str(site)) == site


def test_committed_baselines_are_named_by_their_triton_version():
    versions = baseline_versions()
    assert {"3.6.0", "3.9.0"} <= set(versions)
    for version in versions:
        record = json.loads(baseline_path(version).read_text())
        assert record["triton"] == version and record["arch"] == "sm_90"
        for entry in record["variants"].values():
            assert entry["spill_stores"] == entry["spill_loads"] == 0, entry
            assert entry["shared_bytes"] <= SMEM_LIMIT_BYTES and entry["sites"]


def test_ptxas_log_figures():
    log = (
        "ptxas info    : Compiling entry function 'k' for 'sm_90a'\n"
        "ptxas info    : Function properties for k\n"
        "    16 bytes stack frame, 12 bytes spill stores, 20 bytes spill loads\n"
        "ptxas info    : Used 168 registers, used 1 barriers, 16 bytes cumulative stack size\n"
    )
    assert ptxas_figures(log) == (168, 12, 20)
    with pytest.raises(ValueError, match="no register"):
        ptxas_figures("ptxas fatal   : something else")


def test_sass_count_refuses_what_is_not_a_cubin():
    with pytest.raises(ValueError, match="ELF"):
        sass_instructions(b"#!/bin/sh\n")


def test_compiled_launch_fields_hold_every_figure_the_baseline_stores():
    from moebench.compile_check.baseline import FIGURES

    assert set(FIGURES) <= {f.name for f in dataclasses.fields(CompiledLaunch)}
