"""`moebench export`: files written and checked, parity printed, clear errors, --bench rows."""

import pytest

pytest.importorskip("onnx", reason="needs onnx (pip install 'moebench[export]')")
pytest.importorskip("onnxruntime", reason="needs onnxruntime (pip install 'moebench[export]')")

from moebench.cli import main  # noqa: E402
from moebench.export.exporter import read_metadata  # noqa: E402
from moebench.results import read_rows  # noqa: E402


@pytest.mark.parametrize("flavor", ["portable", "ort-fused"])
def test_export_tiny_writes_checked_file_with_parity(tmp_path, capsys, flavor):
    out = tmp_path / f"{flavor}.onnx"
    rc = main(["export", "--preset", "tiny", "--format", "onnx", "--flavor", flavor, "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert out.exists()
    assert "onnx.checker" in text and "cases passed" in text and "FAIL" not in text
    assert read_metadata(out)["moebench.flavor"] == flavor


def test_export_with_impl_and_external_threshold(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    rc = main(["export", "--preset", "tiny-many", "--dtype", "fp16", "--impl", "padded_batch", "--out", str(out),
               "--external-threshold", "1000"])  # fmt: skip
    assert rc == 0, capsys.readouterr().out
    assert (tmp_path / "m.onnx.data").exists()
    assert read_metadata(out)["moebench.impl"] == "padded_batch"


def test_unsupported_fused_spec_is_a_clear_error(tmp_path, capsys):
    rc = main(["export", "--preset", "tiny-gelu", "--flavor", "ort-fused", "--out", str(tmp_path / "g.onnx")])
    assert rc == 2
    assert "tanh approximation" in capsys.readouterr().err


def test_unknown_impl_and_two_presets_are_errors(tmp_path, capsys):
    assert main(["export", "--preset", "tiny", "--impl", "nope", "--out", str(tmp_path / "a.onnx")]) == 2
    assert main(["export", "--preset", "tiny,tiny-odd", "--out", str(tmp_path / "a.onnx")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "one problem" in err


def test_bench_writes_deployed_rows(tmp_path, capsys):
    out = tmp_path / "deploy.csv"
    rc = main(["export", "--bench", "--preset", "tiny", "--dtype", "fp32", "--tokens", "1,5", "--device", "cpu",
               "--reps", "3", "--out", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0, text
    rows = read_rows(out)
    deployed = {(r["impl"], r["T"]) for r in rows if r["kind"] == "deployed"}
    assert deployed == {(n, t) for n in ("ort-cpu:portable", "ort-cpu:ort-fused") for t in ("1", "5")}
    assert all(r["parity_ok"] == "True" for r in rows)
    assert "ort-cuda:portable" in text  # listed as not run, with its reason


def test_gpu_deploy_script_smoke_on_cpu(tmp_path):
    """The GPU session's script, run on the CPU with a tiny preset so it cannot rot unseen."""
    from moebench.export import gpu_deploy_run

    rc = gpu_deploy_run.main(
        ["--device", "cpu", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--presets", "tiny",
         "--dtypes", "fp16", "--tokens", "1,5", "--compare", "", "--reps", "2"]
    )  # fmt: skip
    rows = read_rows(tmp_path / "out" / "deploy-gpu.csv")
    assert rc == 0
    assert {(r["impl"], r["T"], r["status"]) for r in rows} == {
        (impl, t, "ok") for impl in ("ort-cpu:portable", "ort-cpu:ort-fused") for t in ("1", "5")
    }
    assert "wrote 4 row(s)" in (tmp_path / "out" / "export-log.txt").read_text()


def test_bench_quant_writes_qmoe_rows_and_their_page(tmp_path, capsys):
    out = tmp_path / "qmoe.csv"
    rc = main(["export", "--bench", "--shape", "4,2,64,32", "--dtype", "fp32", "--tokens", "1,3", "--device", "cpu",
               "--quant", "int4-g32,int8-g32", "--reps", "2", "--out", str(out)])  # fmt: skip
    assert rc == 0, capsys.readouterr().out
    rows = read_rows(out)
    assert [(r["quant"], int(r["T"])) for r in rows] == [
        (q, t) for q in ("fp32", "int4-g32", "int8-g32") for t in (1, 3)
    ]
    assert {r["graph"] for r in rows} == {"com.microsoft.MoE", "com.microsoft.QMoE"}
    int4 = [r for r in rows if r["quant"] == "int4-g32"]
    assert all(float(r["rel_l2_vs_dequantized"]) < 1e-4 < float(r["rel_l2_vs_unquantized"]) for r in int4)
    page = out.with_suffix(".md").read_text()
    assert page.count("| com.microsoft.QMoE |") == 4 and rows[0]["command"] in page  # generated from the rows
