"""Graph facts the precision passes share, read off any bundle graph (no model code needed).

A pixelrt graph has two regions: the *network* (every GEMM -- Conv, MatMul, Gemm -- and
everything that feeds one) and the *likelihood tail* (everything after the last GEMM:
reshapes, the max-subtracted log-softmax, or a discretized logistic mixture, sampling,
gathers and the final reductions), plus side paths such as the step graph's input
normalisation written back into the caches. Reduced precision goes into the network
only; the tail stays FP32. The rule is structural, so it holds for every family whose
head follows its last GEMM, without a per-family op list.

A GEMM with a constant operand of ones along a unit axis (``ones(1, L) @ below``: the categorical
sampler counts the levels below its threshold that way, since ORT runs a MatMul 2-10x faster than a
ReduceSum over the leading axis) is a sum, not a layer: it belongs to the tail (``layer_gemms``).
"""
from __future__ import annotations

from collections import defaultdict, deque

import numpy as np
import onnx
from onnx import numpy_helper

GEMM_OPS = ("Conv", "MatMul", "Gemm", "ConvTranspose")
# Likelihood math kept in FP32 wherever it appears, even inside the network region.
LIKELIHOOD_OPS = ("ReduceMax", "ReduceSum", "ReduceLogSumExp", "Softmax", "LogSoftmax", "Exp", "Log",
                  "Softplus", "CumSum")


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every node a unique name (block lists and quantizer exclusions address nodes by name)."""
    seen: set[str] = set()
    for k, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"pixelrt_node_{k}_{node.op_type}"
        seen.add(node.name)


def _constants(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    """The graph's constant tensors by name: initializers and Constant nodes' ``value``."""
    out = {t.name: t for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            out.update({n.output[0]: a.t for a in n.attribute if a.name == "value"})
    return out


def _is_ones_vector(t: onnx.TensorProto | None) -> bool:
    if t is None or len(t.dims) != 2 or 1 not in t.dims or t.data_type != onnx.TensorProto.FLOAT:
        return False
    return bool(np.all(numpy_helper.to_array(t) == 1.0))


def layer_gemms(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The GEMM nodes that are layers: every Conv / MatMul / Gemm but a MatMul with a constant ones row or
    column as an operand, which is a sum (see the module doc)."""
    consts = _constants(model)
    return [n for n in model.graph.node if n.op_type in GEMM_OPS and not (
        n.op_type == "MatMul" and any(_is_ones_vector(consts.get(i)) for i in n.input))]


def network_nodes(model: onnx.ModelProto) -> set[str]:
    """Names of the layer GEMM nodes and of every node upstream of one."""
    producer = {o: n for n in model.graph.node for o in n.output}
    todo = deque(layer_gemms(model))
    seen: set[str] = set()
    while todo:
        node = todo.popleft()
        if node.name in seen:
            continue
        seen.add(node.name)
        todo.extend(producer[i] for i in node.input if i in producer)
    return seen


def tail_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes outside the network region: the likelihood tail and side paths."""
    net = network_nodes(model)
    return [n.name for n in model.graph.node if n.name not in net]


def head_gemms(model: onnx.ModelProto) -> list[str]:
    """GEMMs from which no other GEMM is reachable: the layers that produce the logits.

    Rounding their output to FP16 rounds every logit (ulp 2^-11 of its size): on ref28 with
    random weights (logits of size ~50) that alone moved bits/dim by 2e-3. FP16 keeps them FP32."""
    consumers = defaultdict(list)
    for n in model.graph.node:
        for i in n.input:
            consumers[i].append(n)
    heads = []
    layers = layer_gemms(model)
    names = {n.name for n in layers}
    for gemm in layers:
        todo, seen, feeds_gemm = deque(gemm.output), set(), False
        while todo and not feeds_gemm:
            for n in consumers[todo.popleft()]:
                if n.name in names:
                    feeds_gemm = True
                    break
                if n.name not in seen:
                    seen.add(n.name)
                    todo.extend(n.output)
        if not feeds_gemm:
            heads.append(gemm.name)
    return heads


def gemm_nodes(model: onnx.ModelProto) -> list[str]:
    return [n.name for n in layer_gemms(model)]


def op_types(model: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for n in model.graph.node:
        counts[n.op_type] += 1
    return dict(sorted(counts.items()))


def topological_sort(model: onnx.ModelProto) -> None:
    """Reorder nodes so each comes after its inputs' producers (ONNX requires it; converters may not)."""
    g = model.graph
    producer = {o: k for k, n in enumerate(g.node) for o in n.output}
    deps = [{producer[i] for i in n.input if i in producer} for n in g.node]
    users = defaultdict(list)
    for k, d in enumerate(deps):
        for p in d:
            users[p].append(k)
    ready = deque(k for k, d in enumerate(deps) if not d)
    remaining = [len(d) for d in deps]
    order = []
    while ready:
        k = ready.popleft()
        order.append(k)
        for u in users[k]:
            remaining[u] -= 1
            if remaining[u] == 0:
                ready.append(u)
    if len(order) != len(g.node):
        raise ValueError("graph has a cycle; cannot sort it")
    nodes = [g.node[k] for k in order]
    del g.node[:]
    g.node.extend(nodes)


def drop_dead_nodes(model: onnx.ModelProto) -> None:
    """Remove nodes none of whose outputs is used by another node or the graph outputs."""
    g = model.graph
    while True:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        if not dead:
            return
        for n in dead:
            g.node.remove(n)
