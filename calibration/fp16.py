"""FP16 graphs with an FP32 likelihood tail, via ONNX Runtime's float16 converter.

``onnxruntime.transformers.float16.convert_float_to_float16`` (shipped in the
onnxruntime wheel we already depend on) does the conversion: weights to FP16,
casts at the region borders, graph inputs and outputs kept FP32
(``keep_io_types``). What stays FP32 is given to it as a node block list: the
likelihood tail (see :mod:`pixelrt.calibration.graphs`), the head GEMMs that
produce the logits, and every likelihood op.

One fix-up follows. Both maintained converters (this one and
onnxconverter-common 1.16) treat each blocked node as its own FP32 island and
store the tensors *between* two blocked nodes in FP16 (Cast to FP16, Cast back
to FP32). In a log-softmax that rounds the shifted logits and the per-image sum:
on a 1x5x6 test model the log-likelihood moved by 0.05 nats. The pass
:func:`drop_fp16_round_trips` rewires each Cast(FP32->FP16)->Cast(->FP32) pair
whose source is FP32 to read the FP32 tensor directly; nothing else is rewritten.
(onnxconverter-common was also tried: with Cast in the block list it loops
forever, and without it its output fails ORT's type check on our uint8 input cast.)
"""
from __future__ import annotations

import onnx
from onnx import TensorProto

from pixelrt.calibration.graphs import (LIKELIHOOD_OPS, drop_dead_nodes, head_gemms, name_nodes, tail_nodes,
                                        topological_sort)


def convert_fp16(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict]:
    """FP16 copy of ``model``; returns it and a record of what stayed FP32."""
    from onnxruntime.transformers import float16

    model = onnx.ModelProto.FromString(model.SerializeToString())
    name_nodes(model)
    keep = tail_nodes(model) + head_gemms(model)
    blocked_ops = sorted(set(LIKELIHOOD_OPS) | set(float16.DEFAULT_OP_BLOCK_LIST))
    out = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=keep,
                                           op_block_list=blocked_ops, disable_shape_infer=False)
    fp32_tensors = _fp32_tensors(out, set(keep), blocked_ops)
    dropped = drop_fp16_round_trips(out, fp32_tensors)
    drop_dead_nodes(out)
    topological_sort(out)
    # The converter's value_info still types the rewired tensors as FP16: re-derive every type.
    del out.graph.value_info[:]
    out = onnx.shape_inference.infer_shapes(out, strict_mode=True)
    onnx.checker.check_model(out)
    return out, {"converter": "onnxruntime.transformers.float16", "fp32_nodes": len(keep),
                 "fp32_head_gemms": head_gemms(model),
                 "fp32_op_types": blocked_ops, "round_trips_removed": dropped, "io": "float32 (keep_io_types)"}


def _fp32_tensors(model: onnx.ModelProto, blocked_nodes: set[str], blocked_ops: list[str]) -> set[str]:
    """Tensors known to be FP32 after conversion: outputs of blocked nodes and FP32 graph inputs."""
    names = {i.name for i in model.graph.input if i.type.tensor_type.elem_type == TensorProto.FLOAT}
    for n in model.graph.node:
        if n.name in blocked_nodes or n.op_type in blocked_ops:
            names.update(n.output)
        if n.op_type == "Cast" and _cast_to(n) == TensorProto.FLOAT:
            names.update(n.output)
    return names


def _cast_to(node: onnx.NodeProto) -> int | None:
    for a in node.attribute:
        if a.name == "to":
            return a.i
    return None


def drop_fp16_round_trips(model: onnx.ModelProto, fp32_tensors: set[str]) -> int:
    """Let every Cast(->FP32) fed by a Cast(FP32->FP16) read the FP32 source instead. Returns the count."""
    producer = {o: n for n in model.graph.node for o in n.output}
    count = 0
    for node in model.graph.node:
        if node.op_type != "Cast" or _cast_to(node) != TensorProto.FLOAT:
            continue
        src = producer.get(node.input[0])
        if src is None or src.op_type != "Cast" or _cast_to(src) != TensorProto.FLOAT16:
            continue
        if src.input[0] in fp32_tensors:
            node.input[0] = src.input[0]  # a Cast FP32->FP32 is a no-op that ORT removes
            count += 1
    return count
