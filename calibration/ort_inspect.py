"""What ONNX Runtime really executes: the optimized graph of a session, by weight type.

On a CPU without FP16 kernels ORT's InsertCastTransformer wraps FP16 nodes in casts
and computes them in FP32 (constant-folding the FP16 weights back to FP32). Saving the
optimized model (``SessionOptions.optimized_model_filepath``) and reading the element
type of each GEMM-like node's weight shows which precision the arithmetic runs in.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
from onnx import TensorProto

from pixelrt.atomic import scratch_directory

_GEMM_LIKE = ("Conv", "MatMul", "Gemm", "FusedConv", "FusedMatMul", "FusedGemm", "NchwcConv", "QLinearConv",
              "QLinearMatMul", "ConvInteger", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul")


def executed_precision(path: str | Path) -> dict:
    """Counts of GEMM-like nodes in ORT's optimized CPU graph, keyed by op and weight element type."""
    import onnxruntime as ort

    with scratch_directory("ortopt") as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        opts.log_severity_level = 3
        ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        model = onnx.load(opts.optimized_model_filepath)
    inits = {t.name: t.data_type for t in model.graph.initializer}
    gemms: Counter = Counter()
    for n in model.graph.node:
        if n.op_type in _GEMM_LIKE:
            types = sorted({TensorProto.DataType.Name(inits[i]).lower() for i in n.input[1:] if i in inits})
            gemms[f"{n.op_type}[{'/'.join(types) or 'runtime weights'}]"] += 1
    ops = Counter(n.op_type for n in model.graph.node)
    return {"gemm_nodes": dict(sorted(gemms.items())), "casts": ops.get("Cast", 0),
            "fp16_initializers": sum(t == TensorProto.FLOAT16 for t in inits.values()),
            "nodes": sum(ops.values())}
