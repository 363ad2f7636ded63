"""Trace one graph of an export spec to ONNX with torch.onnx (the dynamo exporter).

Every graph of every family goes through ``export_graph``: its example inputs and its dynamic
batch axis come from the graph's I/O records (the bundle schema), so no family writes its own
tracing code. The exporter's console chatter is captured and shown only when an export fails.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from pixelrt.bundle import BATCH, GraphSpec
from pixelrt.bundle.records import PIXELS
from pixelrt.errors import PixelrtError
from pixelrt.faults import raise_if_signalled
from pixelrt.models.layers import freeze_masks

OPSET = 20
TRACE_BATCH = 2  # export traces at this batch; validation runs at another one
TRACE_PIXELS = 3  # a wavefront graph's pixels in flight at trace time (another size than the batch)
DTYPES = {"uint8": torch.uint8, "int64": torch.int64, "float32": torch.float32, "float16": torch.float16}


@contextlib.contextmanager
def _quiet_exporter():
    """Silence torch.onnx's progress prints and warnings; re-raise failures with the captured log."""
    buf = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._export", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            warnings.simplefilter("ignore")
            yield
        raise_if_signalled()  # a SIGTERM the exporter caught and retried past still ends the command
    except Exception as e:  # noqa: BLE001 - surface the exporter's log with its error
        raise_if_signalled()  # ... and one it wrapped in its own error is not an export failure
        raise PixelrtError(f"ONNX export failed: {e}\n--- exporter log ---\n{buf.getvalue()[-4000:]}") from e
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


def _export(module: nn.Module, args: tuple, path: Path, input_names, output_names, dynamic_shapes) -> None:
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_shapes=dynamic_shapes, dynamo=True, opset_version=OPSET,
                          optimize=True, verbose=False, external_data=False)
    _cast_uint8_before_shape(path)


def _cast_uint8_before_shape(path: Path) -> None:
    """Feed every ``Shape`` of a uint8 graph input through ``Cast(to=FLOAT)``.

    The exporter takes a dynamic batch size from whichever input carries it, sometimes the uint8 image
    itself, and TensorRT's Shape layer takes no UINT8 (onnx-tensorrt operator matrix; `pixelrt doctor`
    flags it). The cast is the one the graph already applies to the image, so ONNX Runtime's
    common-subexpression elimination merges the two; the values and shapes are unchanged.
    """
    import onnx

    model = onnx.load(str(path))
    g = model.graph
    uint8 = {i.name for i in g.input if i.type.tensor_type.elem_type == onnx.TensorProto.UINT8}
    nodes, changed = [], False
    for node in g.node:
        if node.op_type == "Shape" and node.input[0] in uint8:
            cast = f"{node.input[0]}_float_for_{node.name or 'shape'}"
            nodes.append(onnx.helper.make_node("Cast", [node.input[0]], [cast], name=cast, to=onnx.TensorProto.FLOAT))
            node.input[0] = cast
            changed = True
        nodes.append(node)
    if changed:
        del g.node[:]
        g.node.extend(nodes)
        onnx.checker.check_model(model)
        onnx.save(model, str(path))


def example_inputs(spec: GraphSpec, batch: int = TRACE_BATCH) -> tuple:
    """Trace inputs from a graph's I/O records: zeros of each shape and dtype at ``batch`` (a mid-image
    position for the step protocol's scalars, ``force`` -1 and ``noise`` 0.5 so a sample is drawn)."""
    fill = {"row": 1, "col": 1, "rows": 1, "cols": 1, "force": -1, "noise": 0.5}
    out = []
    for t in spec.inputs:
        shape = tuple(batch if d == BATCH else TRACE_PIXELS if d == PIXELS else d for d in t.shape)
        out.append(torch.full(shape, fill.get(t.name, 0), dtype=DTYPES[t.dtype]))
    return tuple(out)


def dynamic_shapes(module: nn.Module, args: tuple, batch, spec: GraphSpec | None = None, pixels=None) -> tuple:
    """torch.export dynamic_shapes: the batch axis of every non-scalar input (and, in a wavefront graph,
    every axis its record declares "batch" or "pixels", wherever it is); the arguments a
    ``forward(a, b, *rest)`` takes as varargs go in one nested tuple, as torch.export wants."""
    params = list(inspect.signature(module.forward).parameters.values())
    fixed = next((k for k, p in enumerate(params) if p.kind == p.VAR_POSITIONAL), len(params))
    records = spec.inputs if spec is not None else [None] * len(args)
    dims = [({k: batch if d == BATCH else pixels for k, d in enumerate(t.shape) if d in (BATCH, PIXELS)} or None)
            if t is not None and (PIXELS in t.shape or BATCH in t.shape[1:]) else {0: batch} if a.dim() > 0 else None
            for a, t in zip(args, records)]
    return (*dims[:fixed], tuple(dims[fixed:])) if len(dims) > fixed else tuple(dims)


def export_graph(module: nn.Module, spec: GraphSpec, path: Path, trace=contextlib.nullcontext) -> None:
    """Trace ``module`` to ``path`` with the inputs, outputs and dynamic batch axis its record declares."""
    args = example_inputs(spec)
    batch = torch.export.Dim("batch", min=1, max=65536)
    pixels = torch.export.Dim("pixels", min=1, max=4096)
    with trace():
        _export(freeze_masks(module), args, path, spec.input_names(), spec.output_names(),
                dynamic_shapes(module, args, batch, spec, pixels))
