"""Will TensorRT's ONNX parser take this graph? Checked on any machine, without TensorRT.

`pixelrt doctor BUNDLE --target tensorrt` runs :func:`check_graph` on every graph of a bundle and
reports, with node names, what the published operator matrix (:mod:`pixelrt.runtime.trt_onnx_ops`)
says TensorRT cannot parse or build:

* operators TensorRT does not support (or that are not in the matrix at all: a plugin would be needed);
* data types: a node's data input of a type the operator does not accept, graph I/O of a type
  TensorRT has no tensor type for, UINT8 inside the graph (TensorRT allows it at the I/O only);
* the matrix's restrictions that decide parsing (``axes`` of Slice/Squeeze/Reduce*/Pad and CumSum's
  ``axis`` must be initializers, TopK ``sorted``/K limit, MaxPool indices, pooling dilations, ...);
* dynamic-shape patterns: a graph input with a dynamic axis other than the batch axis (the engine's
  optimization profile covers the batch range only), and a graph input whose *value* decides a
  tensor shape (TensorRT turns it into a host-side shape tensor: every value would need a profile,
  and a CUDA graph captured once would replay the first value forever);
* the opset outside the matrix's range (a warning: newer TensorRT releases may accept it).

It needs the ``onnx`` package (in the ``export`` and ``gpu`` extras), not TensorRT.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pixelrt.errors import PixelrtError
from pixelrt.runtime.trt_onnx_ops import MATRIX_VERSION, NETWORK_DTYPES, OPERATORS, OPSET_RANGE

# onnx.TensorProto element types -> the matrix's type names
ONNX_TYPES = {1: "FP32", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64", 8: "STRING",
              9: "BOOL", 10: "FP16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64", 14: "COMPLEX64", 15: "COMPLEX128",
              16: "BF16", 17: "FP8", 18: "FP8", 19: "FP8", 20: "FP8", 21: "UINT4", 22: "INT4"}

# operand positions that TensorRT reads as shapes (they become shape tensors when not constant)
SHAPE_OPERANDS = {"Reshape": (1,), "Expand": (1,), "Tile": (1,), "ConstantOfShape": (0,), "Range": (0, 1, 2),
                  "Slice": (1, 2, 3, 4), "Pad": (1, 3), "Resize": (2, 3), "Upsample": (1,), "TopK": (1,),
                  "OneHot": (1,), "Squeeze": (1,), "Unsqueeze": (1,), "Split": (1,),
                  "ReduceSum": (1,), "ReduceMean": (1,), "ReduceMax": (1,), "ReduceMin": (1,), "ReduceProd": (1,)}
# operand that carries the data whose type the matrix lists (default 0)
DATA_OPERAND = {"Where": 1}
AXES_MUST_BE_CONSTANT = {"Slice": 3, "Squeeze": 1, "Unsqueeze": 1, "Pad": 3, "CumSum": 1,
                         **{f"Reduce{k}": 1 for k in ("L1", "L2", "LogSum", "LogSumExp", "Max", "Mean", "Min",
                                                     "Prod", "Sum", "SumSquare")}}


@dataclass(frozen=True)
class Finding:
    graph: str      # bundle graph key, e.g. "step"
    severity: str   # "error": TensorRT will not parse/build it; "warning": it may, with a caveat
    kind: str       # "operator", "dtype", "restriction", "dynamic-shape", "opset"
    node: str       # node name (or the tensor name for graph I/O)
    op: str
    message: str


@dataclass
class GraphCheck:
    graph: str
    file: str
    opset: int
    ops: Counter = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]


def _onnx():
    try:
        import onnx
    except ImportError:
        raise PixelrtError("the TensorRT compatibility check reads graphs with the `onnx` package, which is not "
                           "installed; `pip install onnx` (or pixelrt[gpu])") from None
    return onnx


def load_model(path: str | Path):
    onnx = _onnx()
    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - protobuf raises several types for a damaged file
        raise PixelrtError(f"{path}: not a readable ONNX graph ({str(e)[:160]}); re-run `pixelrt export`") from None
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - inference is best effort; types of graph I/O are still known
        return model


def _tensor_types(model) -> dict[str, int]:
    g = model.graph
    types = {t.name: t.data_type for t in g.initializer}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    return types


def _dims(vi) -> list:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in vi.type.tensor_type.shape.dim]


def check_graph(path: str | Path, graph: str = "graph", batch_axis: int = 0) -> GraphCheck:
    """Everything TensorRT's ONNX parser would refuse in one graph, with node names."""
    model = load_model(path)
    g = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    res = GraphCheck(graph, Path(path).name, opset)
    add = lambda sev, kind, node, op, msg: res.findings.append(Finding(graph, sev, kind, node, op, msg))  # noqa: E731
    if not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        add("warning", "opset", "-", "-", f"opset {opset} is outside {OPSET_RANGE[0]}..{OPSET_RANGE[1]}, the range "
                                          f"of {MATRIX_VERSION}; newer TensorRT may parse it, check `build-engine`")
    types = _tensor_types(model)
    constants = {t.name for t in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    inputs = [i for i in g.input if i.name not in constants]
    io = {i.name for i in inputs} | {o.name for o in g.output}

    for vi in list(inputs) + list(g.output):
        t = ONNX_TYPES.get(vi.type.tensor_type.elem_type, "UNDEFINED")
        if t not in NETWORK_DTYPES:
            add("error", "dtype", vi.name, "graph I/O", f"{vi.name} is {t}; TensorRT tensors are one of "
                                                        f"{', '.join(NETWORK_DTYPES)}")
        elif t == "DOUBLE":
            add("warning", "dtype", vi.name, "graph I/O", f"{vi.name} is DOUBLE; TensorRT casts it to FP32, clamping")
    for vi in inputs:
        dims = _dims(vi)
        dynamic = [k for k, d in enumerate(dims) if not isinstance(d, int) or d <= 0]
        if any(k != batch_axis for k in dynamic):
            add("error", "dynamic-shape", vi.name, "graph input",
                f"input {vi.name} {dims} has dynamic axes {[k for k in dynamic if k != batch_axis]} besides the "
                f"batch axis; the engine's optimization profile only spans the batch range: export them static")

    # taint: tensors whose values derive from a (non-constant) graph input; Shape/Size only read shapes
    tainted = {i.name for i in inputs}
    for index, node in enumerate(g.node):
        name, op = node.name or f"<{node.op_type} #{index}>", node.op_type
        if node.domain not in ("", "ai.onnx"):
            add("error", "operator", name, f"{node.domain}::{op}", f"custom-domain operator {node.domain}::{op} "
                                                                  "needs a TensorRT plugin")
            continue
        if op not in OPERATORS:
            add("error", "operator", name, op, f"{op} is not in {MATRIX_VERSION}; TensorRT's parser has no importer")
            continue
        if OPERATORS[op] is None:
            add("error", "operator", name, op, f"{op} is not supported by TensorRT's ONNX parser ({MATRIX_VERSION})")
            continue
        k = DATA_OPERAND.get(op, 0)
        if len(node.input) > k and node.input[k] in types:
            t = ONNX_TYPES.get(types[node.input[k]], "UNDEFINED")
            if t not in OPERATORS[op]:
                add("error", "dtype", name, op, f"{op} input {node.input[k]!r} is {t}; TensorRT's {op} takes "
                                                f"{', '.join(OPERATORS[op])}")
        for out in node.output:
            t = ONNX_TYPES.get(types.get(out, 1), "UNDEFINED")
            if out not in io and t == "UINT8":
                add("error", "dtype", name, op, f"{out!r} is UINT8 inside the graph; TensorRT allows UINT8 only "
                                                "as a network input or output (cast it at the edge)")
            elif t not in NETWORK_DTYPES:
                add("error", "dtype", name, op, f"{out!r} is {t}, which TensorRT has no tensor type for")
        _restrictions(node, name, op, constants, add)
        for pos in SHAPE_OPERANDS.get(op, ()):
            if len(node.input) > pos and node.input[pos] in tainted:
                add("error", "dynamic-shape", name, op,
                    f"operand {pos} of {op} ({node.input[pos]!r}) is computed from a graph input's values, so "
                    "TensorRT makes it a host-side shape tensor: every value would need its own profile and a "
                    "captured CUDA graph would replay the first one; compute it from shapes or constants")
        if op not in ("Shape", "Size") and any(i in tainted for i in node.input):
            tainted.update(o for o in node.output if o)
        res.ops[op] += 1
    return res


def _restrictions(node, name: str, op: str, constants: set, add) -> None:
    """The matrix's restriction column, where it decides whether TensorRT parses the node."""
    attrs = {a.name: a for a in node.attribute}
    pos = AXES_MUST_BE_CONSTANT.get(op)
    if pos is not None and len(node.input) > pos and node.input[pos] and node.input[pos] not in constants:
        what = "axis" if op == "CumSum" else "axes"
        add("error", "restriction", name, op, f"{op}: `{what}` ({node.input[pos]!r}) must be an initializer or "
                                              "a Constant for TensorRT")
    if op == "TopK" and "sorted" in attrs and attrs["sorted"].i != 1:
        add("error", "restriction", name, op, "TopK: `sorted` must be 1 for TensorRT")
    if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
        add("error", "restriction", name, op, "MaxPool: the `Indices` output is not supported by TensorRT")
    if op in ("AveragePool", "MaxPool", "LpPool") and "dilations" in attrs and any(d != 1 for d in attrs["dilations"].ints):
        add("error", "restriction", name, op, f"{op}: `dilations` must be empty or all ones for TensorRT")
    if op == "ScatterND" and "reduction" in attrs and attrs["reduction"].s not in (b"", b"none"):
        add("error", "restriction", name, op, "ScatterND: `reduction` is not supported by TensorRT")
    if op == "LayerNormalization" and sum(1 for o in node.output if o) > 1:
        add("error", "restriction", name, op, "LayerNormalization: only the first output `Y` is supported")
    if op == "Constant" and any(k in attrs for k in ("sparse_value", "value_string", "value_strings")):
        add("error", "restriction", name, op, "Constant: sparse and string values are not supported by TensorRT")
    if op == "Dropout" and len(node.input) > 2 and node.input[2] and node.input[2] not in constants:
        add("error", "restriction", name, op, "Dropout: `training_mode` must be an initializer that is False")


def trt_graphs(bundle) -> dict:
    """The graphs TensorRT runs: all but a wavefront graph (ONNX Runtime only: its pixels-in-flight axis
    changes every call, runtime/backends.py ``WAVE_RUNTIMES``)."""
    front = bundle.manifest.schedule.wavefront if bundle.manifest.schedule else None
    return {k: g for k, g in bundle.graphs.items() if front is None or k != front.graph}


def check_bundle(bundle) -> list[GraphCheck]:
    """check_graph on every graph of a loaded bundle that TensorRT runs (``trt_graphs``)."""
    return [check_graph(bundle.root / spec.file, key) for key, spec in trt_graphs(bundle).items()]


def format_checks(checks: list[GraphCheck]) -> str:
    lines = [f"TensorRT ONNX parser compatibility ({MATRIX_VERSION}, opsets {OPSET_RANGE[0]}..{OPSET_RANGE[1]})"]
    for c in checks:
        verdict = "ok" if not c.errors else f"{len(c.errors)} problem(s)"
        lines.append(f"  {c.graph:6s} {c.file:12s} opset {c.opset}, {sum(c.ops.values())} nodes: {verdict}")
        lines.append("         ops: " + ", ".join(f"{op} x{n}" for op, n in sorted(c.ops.items())))
        for f in c.findings:
            lines.append(f"         {f.severity.upper():7s} [{f.kind}] node {f.node} ({f.op}): {f.message}")
    return "\n".join(lines)
