"""INT8 bundles: explicit symmetric Q/DQ, calibrated on real images and recorded step feeds."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from pixelrt.calibration.graphs import layer_gemms
from pixelrt.calibration.int8 import METHODS
from pixelrt.calibration.measure import INT8_RELATIVE_BUDGET, step_vs_full_budget
from pixelrt.calibration.readers import RecordingRunner, step_feeds
from pixelrt.bundle import load_bundle
from pixelrt.runtime.ort_backend import OrtBackend

from .conftest import images


def test_int8_bundle_has_symmetric_per_channel_qdq(rgb_int8):
    _, fp32, res = rgb_int8
    b = load_bundle(res.bundle.root)
    assert b.precision == "int8" and b.graphs["step"].inputs == fp32.graphs["step"].inputs
    for g in ("full", "step"):
        model = onnx.load(b.graph_path(g))
        inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
        dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
        assert q and dq
        for n in q + dq:  # symmetric: every zero point is 0; int8 values (int32 only for biases)
            zp = inits[n.input[2]]
            assert zp.dtype in (np.int8, np.int32) and not zp.any()
            assert zp.dtype == np.int8 or "bias" in n.input[0]
        graph_inputs = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
        for n in q:  # integer inputs (uint8 images, int64 positions) are never quantized
            assert graph_inputs.get(n.input[0], onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT
        layers = {n.name for n in layer_gemms(onnx.load(fp32.graph_path(g)))}
        every = [n for n in model.graph.node if n.op_type in ("Conv", "MatMul")]
        gemms = [n for n in every if n.name in layers]
        producer = {o: n for n in model.graph.node for o in n.output}
        for n in every:  # a ones-row MatMul (the step sampler's count of levels) is a sum: never quantized
            if n.name not in layers:
                assert g == "step" and not any(i in producer and producer[i].op_type == "DequantizeLinear"
                                               for i in n.input), n.name
        assert len(every) - len(gemms) == (1 if g == "step" else 0)
        per_channel = 0
        for n in gemms:  # both operands of every GEMM come through a DequantizeLinear
            assert all(producer[i].op_type == "DequantizeLinear" for i in n.input[:2]), n.name
            w = producer[n.input[1]]
            scale = inits[w.input[1]]
            weight = inits[w.input[0]]
            assert weight.dtype == np.int8
            if scale.ndim == 1:  # per output channel: one scale per output of the weight
                out_axis = 0 if n.op_type == "Conv" else weight.ndim - 1
                assert len(scale) == weight.shape[out_axis]
                per_channel += 1
            else:  # only a stacked (L, K, N) window weight is per tensor (ORT CPU kernel limit)
                per_tensor = res.bundle.manifest.calibration["int8"][g]["per_tensor_weights"]
                assert n.op_type == "MatMul" and weight.ndim == 3
                assert w.input[0].removesuffix("_quantized") in per_tensor
        assert per_channel >= len(gemms) - 2


def test_auto_reports_every_method_and_keeps_the_best(rgb_int8):
    _, _, res = rgb_int8
    assert set(res.candidates) == set(METHODS)
    assert res.method == min(res.candidates, key=res.candidates.get)
    assert res.bpd == pytest.approx(res.candidates[res.method], abs=1e-9)
    cal = res.bundle.manifest.calibration
    assert cal["method"] == res.method and cal["measured"]["candidates_bits_per_dim"] == res.candidates
    assert cal["calibration_set"]["images"] == 32 and len(cal["calibration_set"]["sha256"]) == 64


def test_int8_step_graph_agrees_with_its_full_graph(rgb_int8):
    _, fp32, res = rgb_int8
    assert res.measure.step_vs_full_bpd <= step_vs_full_budget("int8", res.fp32_bpd)
    assert np.isfinite(res.measure.bits_per_dim).all()


def test_recording_runner_copies_a_spread_of_steps(grey_bundle):
    _, bundle = grey_bundle
    x = images(bundle, 3, 2)
    with OrtBackend(bundle.graph_path("step")) as step:
        feeds = step_feeds(bundle, step, x, max_steps=7)
        img = bundle.image
        assert 1 <= len(feeds) <= 8
        assert set(feeds[0]) == set(bundle.graphs["step"].input_names())
        positions = {(int(f["row"]), int(f["col"])) for f in feeds}
        assert len(positions) == len(feeds)  # distinct steps, spread over the raster
        assert max(r for r, _ in positions) >= img.height // 2
        # copies: the step loop writes its caches in place, the recorded ones must not change
        last = feeds[-1]
        assert any(np.abs(last[s.name]).sum() > 0 for s in bundle.state)
        rec = RecordingRunner(step, keep_every=1)
        f = dict(feeds[0])
        rec.infer(f)
        f[bundle.state[0].name][:] = 123.0
        assert not (rec.recorded[0][bundle.state[0].name] == 123.0).any()


def test_int8_on_trained_digits_meets_two_percent(digits_trained, tmp_path):
    from pixelrt.calibration.calibrate import calibrate_bundle

    _, bundle, train_x, test_x = digits_trained
    res = calibrate_bundle(bundle.root, tmp_path / "int8", "int8", test_x[:128], calib_x=train_x[:128],
                           data_name="digits", method="minmax", step_images=32, step_feeds_max=128,
                           teacher=4, samples=4, log=lambda s: None)
    rel = res.delta_bpd / res.fp32_bpd
    assert rel <= INT8_RELATIVE_BUDGET, (res.fp32_bpd, res.bpd)
    assert res.measure.step_vs_full_bpd <= step_vs_full_budget("int8", res.fp32_bpd)


def test_fp16_on_trained_digits_meets_budget_in_real_half(digits_trained, tmp_path):
    import torch

    from pixelrt.calibration.calibrate import calibrate_bundle
    from pixelrt.calibration.measure import FP16_BPD_BUDGET
    from pixelrt.parity.precision import half_precision_logp

    model, bundle, _, test_x = digits_trained
    x = test_x[:128]
    res = calibrate_bundle(bundle.root, tmp_path / "fp16", "fp16", x, teacher=4, samples=4, log=lambda s: None)
    assert abs(res.delta_bpd) <= FP16_BPD_BUDGET and res.measure.step_vs_full_bpd <= FP16_BPD_BUDGET
    with torch.inference_mode():
        ref = model.log_prob(torch.from_numpy(x)).double().numpy().reshape(len(x), -1).sum(1)
    half = half_precision_logp(model, x).astype(np.float64).reshape(len(x), -1).sum(1)
    img = bundle.image
    assert not np.array_equal(half, ref)
    assert abs(img.bits_per_dim(half).mean() - img.bits_per_dim(ref).mean()) <= FP16_BPD_BUDGET
