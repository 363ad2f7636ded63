"""`pixelrt doctor --target tensorrt`: every exported bundle passes, a hand-made bad graph fails with node names."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from pixelrt.cli import main
from pixelrt.runtime.trt_onnx_ops import OPERATORS, OPSET_RANGE
from pixelrt.runtime.trt_support import check_bundle, check_graph


def test_matrix_is_the_published_one():
    assert len(OPERATORS) == 196 and OPSET_RANGE == (9, 20)
    assert OPERATORS["Conv"] == ("FP32", "FP16", "BF16") and OPERATORS["NonZero"] == ("FP32", "FP16")
    assert OPERATORS["Bernoulli"] is None and OPERATORS["Unique"] is None and OPERATORS["Det"] is None
    assert "INT64" in OPERATORS["Clip"]  # importer correction, documented in trt_onnx_ops


@pytest.mark.parametrize("which", ["grey_bundle", "rgb_bundle"])
def test_every_exported_bundle_passes(which, request):
    _, bundle = request.getfixturevalue(which)
    checks = check_bundle(bundle)
    assert {c.graph for c in checks} == {"full", "step"}
    assert [f for c in checks for f in c.findings] == []
    step = next(c for c in checks if c.graph == "step")
    assert step.ops["Gather"] > 0 and step.ops["MatMul"] > 0 and step.opset == 20


def _bad_graph(path):
    """x (batch, 3, H?, 4) float, n int64 scalar; unsupported op, wrong type, UINT8 inside, value-decided shape."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "height", 4])
    n = helper.make_tensor_value_info("n", TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    u = helper.make_tensor_value_info("u", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Bernoulli", ["x"], ["bern"], name="sample_bernoulli"),
        helper.make_node("Cast", ["x"], ["x8"], to=TensorProto.UINT8, name="to_uint8"),
        helper.make_node("Cast", ["x8"], ["xf"], to=TensorProto.FLOAT, name="from_uint8"),
        helper.make_node("CumSum", ["n", "axis"], ["ncum"], name="int_cumsum"),
        helper.make_node("Reshape", ["xf", "ncum"], ["y"], name="reshape_by_value"),
        helper.make_node("Add", ["bern", "xf"], ["u"], name="ok_add"),
    ]
    axis = helper.make_tensor_value_info("axis", TensorProto.INT64, [])
    graph = helper.make_graph(nodes, "bad", [x, n, axis], [y, u])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    onnx.save(model, str(path))
    return path


def test_bad_graph_lists_each_problem_with_its_node(tmp_path):
    res = check_graph(_bad_graph(tmp_path / "bad.onnx"), "step")
    got = {(f.kind, f.node) for f in res.errors}
    assert ("operator", "sample_bernoulli") in got
    assert ("dtype", "to_uint8") in got          # UINT8 inside the graph
    assert ("dtype", "int_cumsum") in got        # CumSum takes floats only
    assert ("restriction", "int_cumsum") in got  # axis must be an initializer
    assert ("dynamic-shape", "reshape_by_value") in got  # a shape computed from an input's values
    assert ("dynamic-shape", "x") in got         # dynamic axis beyond the batch
    assert ("operator", "ok_add") not in got and ("dtype", "ok_add") not in got
    assert [f.kind for f in res.findings if f.severity == "warning"] == ["opset"]  # opset 22 > 20


def test_doctor_cli_exit_codes(grey_bundle, tmp_path, capsys):
    _, bundle = grey_bundle
    assert main(["doctor", str(bundle.root), "--profile", "jetson-orin-nano"]) == 0
    out = capsys.readouterr().out
    assert "all 2 graphs pass" in out and "memory estimate at batch 16" in out and "tensorrt" in out
    assert "pixelrt calibrate" in out  # FP32 bundle on a Jetson profile: the FP16 advice
    bad = tmp_path / "bad"
    import shutil

    shutil.copytree(bundle.root, bad)
    _bad_graph(bad / "step.onnx")
    import json

    from pixelrt.bundle import sha256_file

    m = json.loads((bad / "manifest.json").read_text())
    m["files"]["step.onnx"]["sha256"] = sha256_file(bad / "step.onnx")
    m["files"]["step.onnx"]["bytes"] = (bad / "step.onnx").stat().st_size
    (bad / "manifest.json").write_text(json.dumps(m))
    assert main(["doctor", str(bad)]) == 2  # a foreign graph: the parser findings, then the manifest mismatch
    cap = capsys.readouterr()
    assert "sample_bernoulli" in cap.out and "reshape_by_value" in cap.out and "TensorRT would reject step.onnx" in cap.out
    assert "bad/step.onnx: ONNX Runtime cannot load this graph" in cap.err  # a foreign graph never runs


def test_unreadable_graph_is_one_clear_error(tmp_path):
    from pixelrt.errors import PixelrtError

    p = tmp_path / "x.onnx"
    p.write_bytes(np.arange(10, dtype=np.uint8).tobytes())
    with pytest.raises(PixelrtError, match="not a readable ONNX graph"):
        check_graph(p)


@pytest.mark.parametrize("which", ["vae_grey_bundle", "vae_rgb_bundle"])
def test_vae_bundles_pass(which, request):
    """The VAE's encoder and decoder graphs (the families with a per-row graph are checked in their export tests)."""
    from tests.runtime.device_emulation import assert_tensorrt_parser_check_passes

    assert_tensorrt_parser_check_passes(request.getfixturevalue(which)[1])
