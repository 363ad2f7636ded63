"""`pixelrt bench --runtime ...` on a machine without CUDA (one clear error, before any export) and the
bench's own logic run with ORT CPU (records, scaling of partly timed images, the table, the JSON)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from pixelrt.cli import main
from pixelrt.errors import PixelrtError
from pixelrt.runtime.gpu_bench import _check_provider, bench_bundle, format_table, parse_runtimes


def _has_cuda() -> bool:
    import importlib.util

    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers() or importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(_has_cuda(), reason="this machine has GPU runtimes: the no-CUDA message cannot be shown here")
@pytest.mark.parametrize("runtime, needs", [("trt", "TensorRT"), ("ort-cuda", "CUDAExecutionProvider"),
                                            ("ort-cuda-graph,trt", "CUDAExecutionProvider"),
                                            ("ort-trt", "TensorrtExecutionProvider")])
def test_without_cuda_bench_exits_with_one_clear_line_before_exporting(runtime, needs, capsys):
    assert main(["bench", "--runtime", runtime]) == 2
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and needs in err and "pixelrt[gpu]" in err
    assert "exporting" not in out  # nothing was exported or timed


def test_runtime_names_are_checked(capsys):
    assert parse_runtimes("trt, ort-cuda") == ["trt", "ort-cuda"]
    for bad in ("ort", "cpu", ",", "trt,tensorrt"):
        with pytest.raises(PixelrtError, match="GPU runtimes"):
            parse_runtimes(bad)
    assert main(["bench", "--runtime", "trt", "--model", "vae28"]) == 2
    assert "not 'vae28'" in capsys.readouterr().err


def test_ort_silently_on_the_cpu_is_refused():
    step = SimpleNamespace(session=SimpleNamespace(get_providers=lambda: ["CPUExecutionProvider"]))
    with pytest.raises(PixelrtError, match="could not start CUDAExecutionProvider"):
        _check_provider("ort-cuda", step)
    _check_provider("ort", step)


def test_bench_records_and_table_with_ort_cpu(grey_bundle, tmp_path):
    _, bundle = grey_bundle
    lines = []
    records = bench_bundle(bundle, ["ort"], [1, 3], rows=2, repeats=1, name="grey", log=lines.append,
                           json_path=tmp_path / "b.json")
    H, W = bundle.image.height, bundle.image.width
    assert [(r["runtime"], r["batch"], r["rows_timed"]) for r in records] == [("ort", 1, 2), ("ort", 3, 2)]
    for r in records:  # us/step and ms/image are the same measurement in two units
        assert r["us_per_step"] * H * W / 1e3 == pytest.approx(r["ms_per_image"] * r["batch"])
    table = lines[-2]
    assert "ort (CPU)" in table and "1.0x" in table and f"timed 2 of {H} rows" in table
    assert json.loads((tmp_path / "b.json").read_text()) == records
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left nothing behind
    mixed = format_table([{**records[0], "runtime": "trt", "ms_per_image": records[0]["ms_per_image"] / 4,
                           "rows_timed": H}, *records])
    assert "4.0x" in mixed


@pytest.mark.skipif(_has_cuda(), reason="this machine has GPU runtimes: the no-CUDA message cannot be shown here")
def test_eval_and_build_engine_without_cuda_name_what_is_missing(grey_bundle, tmp_path, capsys):
    import numpy as np

    _, bundle = grey_bundle
    np.savez(tmp_path / "x.npz", x=bundle.reference()["x"])
    for runtime, needs in (("trt", "TensorRT"), ("ort-cuda", "CUDAExecutionProvider")):
        assert main(["eval", str(bundle.root), "--data", str(tmp_path / "x.npz"), "--levels", "7", "--split", "all",
                     "--runtime", runtime]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needs in err[0] and "pixelrt[gpu]" in err[0], err
    assert main(["build-engine", str(bundle.root)]) == 2
    out = capsys.readouterr().out
    assert "engines to build: full, step" in out  # default: every graph of the bundle (a row graph too)
