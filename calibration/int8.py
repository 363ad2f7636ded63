"""Static INT8 with explicit QuantizeLinear/DequantizeLinear pairs (the form TensorRT consumes).

onnxruntime.quantization's ``quantize_static`` in QDQ format: symmetric INT8
activations, symmetric per-channel INT8 weights, calibrated by one of ORT's
calibrators (MinMax, Entropy, Percentile) on real data. Only the GEMMs' inputs
are quantized (``op_types_to_quantize``) and their outputs stay float
(``OpTypesToExcludeOutputQuantization``): the logits and everything after them
-- the likelihood tail -- stay FP32, as do the integer inputs (uint8 images,
int64 positions), which are never quantized.
"""
from __future__ import annotations

from pathlib import Path

import onnx

from pixelrt.atomic import scratch_directory
from pixelrt.calibration.graphs import GEMM_OPS, name_nodes, tail_nodes

METHODS = ("minmax", "entropy", "percentile")


def _calibration_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]


def quantize_int8(model: onnx.ModelProto, reader, method: str, out_path: Path) -> dict:
    """Quantize ``model`` with feeds from ``reader`` (rewound first) into ``out_path``; returns a record."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    name_nodes(model)
    exclude = tail_nodes(model)
    reader.rewind()
    options = {"ActivationSymmetric": True, "WeightSymmetric": True,
               "OpTypesToExcludeOutputQuantization": list(GEMM_OPS),
               # per output channel: the last axis of a MatMul weight (2-D or stacked 3-D), as int8 GEMMs need
               "QDQOpTypePerChannelSupportToAxis": {"MatMul": -1}}
    # ORT's CPU kernel for a quantized MatMul (MatMulIntegerToFloat) rejects per-channel scales on a
    # batched (rank > 2) weight, e.g. the step graph's stacked conv windows: those get one scale each.
    per_tensor = _batched_matmul_weights(model)
    if per_tensor:
        options["TensorQuantOverrides"] = {name: [{"symmetric": True}] for name in per_tensor}
    if method == "percentile":
        options["CalibPercentile"] = 99.999
    with scratch_directory("int8") as tmp:
        src = Path(tmp) / "fp32.onnx"
        onnx.save(model, src)
        quantize_static(str(src), str(out_path), reader, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(GEMM_OPS), per_channel=True, reduce_range=False,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=exclude, calibrate_method=_calibration_method(method),
                        extra_options=options)
    q = onnx.load(out_path)
    counts = {op: sum(n.op_type == op for n in q.graph.node) for op in ("QuantizeLinear", "DequantizeLinear")}
    return {"quantizer": "onnxruntime.quantization.quantize_static", "format": "QDQ", "method": method,
            "activations": "int8 symmetric, per tensor", "weights": "int8 symmetric, per output channel",
            "per_tensor_weights": per_tensor,
            "quantized_op_types": list(GEMM_OPS), "fp32_nodes": len(exclude), "calibration_feeds": len(reader),
            **{k: v for k, v in counts.items()}}


def _batched_matmul_weights(model: onnx.ModelProto) -> list[str]:
    inits = {t.name: len(t.dims) for t in model.graph.initializer}
    return sorted({i for n in model.graph.node if n.op_type == "MatMul" for i in n.input if inits.get(i, 0) > 2})
