"""FP16 bundles: half-precision network, FP32 likelihood tail, judged by bits/dim."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from pixelrt.calibration.fp16 import convert_fp16
from pixelrt.calibration.graphs import LIKELIHOOD_OPS, layer_gemms, tail_nodes
from pixelrt.calibration.measure import FP16_BPD_BUDGET
from pixelrt.bundle import load_bundle
from pixelrt.runtime.evaluate import evaluate
from pixelrt.runtime.ort_backend import OrtBackend

from .conftest import images


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    out = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    out.update({t.name: t.data_type for t in g.initializer})
    return out


def test_fp16_bundle_loads_and_meets_budget(grey_fp16):
    _, fp32, res = grey_fp16
    b = load_bundle(res.bundle.root)
    assert b.precision == "fp16" and b.manifest.to_json()["format_version"] == 2
    assert b.graphs["full"].inputs == fp32.graphs["full"].inputs  # I/O unchanged: every runtime drives it
    # the FP32 wavefront graph is left out: the copy samples with its converted step graph, in raster order
    assert "wave" in fp32.graphs and "wave" not in b.graphs and b.step_schedule.wavefront is None
    assert not (b.root / "wave.onnx").exists() and "wave.onnx" not in b.manifest.files
    measured = b.manifest.calibration["measured"]
    assert measured["bits_per_dim_fp32"] == res.fp32_bpd and measured["bits_per_dim_fp16"] == res.bpd
    assert abs(res.delta_bpd) <= FP16_BPD_BUDGET
    assert res.measure.step_vs_full_bpd <= FP16_BPD_BUDGET
    # the measured number is reproducible through the runtime's own evaluator
    x = images(fp32, 24, 7)
    with OrtBackend(b.graph_path("full")) as full:
        assert abs(evaluate(full, b, x).mean_bits_per_dim - res.bpd) < 1e-9


def test_network_is_fp16_and_likelihood_tail_is_fp32(grey_fp16):
    _, fp32, res = grey_fp16
    for g in ("full", "step"):
        model = onnx.load(res.bundle.graph_path(g))
        types = _types(model)
        heads = set(res.bundle.manifest.calibration["fp16"][g]["fp32_head_gemms"])
        assert len(heads) == 1  # the logits layer
        layers = {n.name for n in layer_gemms(onnx.load(fp32.graph_path(g)))}  # found on the FP32 source
        gemms = {n.name: types[n.input[1]] for n in model.graph.node if n.op_type in ("Conv", "MatMul")}
        assert len(layers) > 2 and heads <= layers
        for name, t in gemms.items():  # the network in FP16; the logits layer and the sampler's count in FP32
            assert t == (TensorProto.FLOAT16 if name in layers - heads else TensorProto.FLOAT), name
        if g == "step":  # the sampler counts levels with a ones-row MatMul: a sum, kept in the FP32 tail
            assert len(set(gemms) - layers) == 1
        lik = [n for n in model.graph.node if n.op_type in LIKELIHOOD_OPS]
        assert lik
        for n in lik:  # every log-softmax / sampling op reads and writes FP32
            assert all(types.get(i, TensorProto.FLOAT) in (TensorProto.FLOAT, TensorProto.INT64) for i in n.input if i), n
            assert all(types[o] in (TensorProto.FLOAT, TensorProto.INT64) for o in n.output), n
        for io in list(model.graph.input) + list(model.graph.output):
            assert io.type.tensor_type.elem_type != TensorProto.FLOAT16


def test_round_trip_fix_keeps_loglik_exact_in_the_tail(grey_bundle):
    """Without the fix-up the converter rounds tensors between FP32 nodes to FP16: the per-image
    sum alone then loses ~0.06 nats (fp16 ulp at |loglik| ~ 50). With it the error is the network's."""
    from onnxruntime.transformers import float16

    _, bundle = grey_bundle
    src = onnx.load(bundle.graph_path("full"))
    ours, info = convert_fp16(src)
    assert info["round_trips_removed"] > 0
    raw = onnx.ModelProto.FromString(src.SerializeToString())
    from pixelrt.calibration.graphs import name_nodes

    name_nodes(raw)
    raw = float16.convert_float_to_float16(raw, keep_io_types=True, node_block_list=tail_nodes(raw),
                                           op_block_list=list(LIKELIHOOD_OPS) + float16.DEFAULT_OP_BLOCK_LIST)
    import onnxruntime as ort

    x = images(bundle, 16, 5)
    outs = {}
    for name, m in (("ours", ours), ("raw", raw)):
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        outs[name] = dict(zip(["loglik", "logp"], sess.run(["loglik", "logp"], {"x": x})))
    # our loglik is the float32 sum of our logp; the raw conversion's is not
    assert np.abs(outs["ours"]["loglik"] - outs["ours"]["logp"].reshape(16, -1).sum(1)).max() < 1e-4
    assert np.abs(outs["raw"]["loglik"] - outs["raw"]["logp"].reshape(16, -1).sum(1)).max() > 1e-3
