"""Trace a model's full and step paths to ONNX with torch.onnx (the dynamo exporter).

The full graph takes uint8 images and returns per-image log-likelihood (nats)
and per-sub-pixel log-probs. The step graph is the model's step module,
sampling inside the graph from host noise. Both have a dynamic batch axis; the
exporter's console chatter is captured and shown only when an export fails.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from pixelrt.errors import PixelrtError
from pixelrt.models.layers import freeze_masks

OPSET = 20
TRACE_BATCH = 2  # export traces at this batch; validation runs at another one


class FullGraph(nn.Module):
    """uint8 (B, C, H, W) -> (loglik (B,) nats, logp (B, C, H, W) nats)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        logp = self.model.log_prob(x)
        return logp.flatten(1).sum(1), logp


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
    except Exception as e:  # noqa: BLE001 - surface the exporter's log with its error
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


def export_full(model: nn.Module, shape: tuple[int, int, int], path: Path) -> None:
    x = torch.zeros(TRACE_BATCH, *shape, dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=65536)
    _export(FullGraph(freeze_masks(model)), (x,), path, ["x"], ["loglik", "logp"], ({0: batch},))


def step_example(stepper: nn.Module, channels: int, width: int, batch: int = TRACE_BATCH) -> tuple:
    """Example step inputs in ``stepper.input_names()`` order (zero caches, a mid-image position)."""
    return (
        torch.zeros(batch, channels, dtype=torch.long),
        torch.tensor(1), torch.tensor(1), torch.tensor(0),
        torch.full((batch,), -1, dtype=torch.long),
        torch.full((batch,), 0.5),
        *(torch.zeros(batch, *c.shape(width, n)) for c, n in stepper.caches),
        *(torch.zeros(batch, *shape) for _, _, shape in _row_states(stepper, width)),  # per-row graph's states
    )


def _row_states(stepper, width: int) -> list:
    return stepper.row_states(width) if hasattr(stepper, "row_states") else []


def export_step(model: nn.Module, channels: int, width: int, path: Path) -> nn.Module:
    stepper = model.stepper().eval()
    args = step_example(stepper, channels, width)
    batch = torch.export.Dim("batch", min=1, max=65536)
    dyn = ({0: batch}, None, None, None, {0: batch}, {0: batch},
           *({0: batch} for _ in [*stepper.caches, *_row_states(stepper, width)]))
    _export(stepper, args, path, stepper.input_names(), stepper.output_names(), dyn)
    return stepper
