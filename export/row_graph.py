"""Per-row graphs (step loop v2): export, manifest records and validation for models with ``row_stepper``.

A model whose step module declares ``row_states(width)`` (the Diagonal BiLSTM's reverse
stream) gets a third graph, ``row.onnx``, which the host runs once after every finished row.
Its inputs are ``row_pixels`` (B, C, W) and any step-loop state it names (the row's layer
inputs, cached by the step graph, and its own ``row`` states); its outputs replace the
``row`` states. Loops inside it run over the image width, unrolled at export: a bundle is
for one image size, which the manifest records.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pixelrt.errors import ParityError
from pixelrt.export.spec import BATCH, state_specs
from pixelrt.bundle import Bundle, GraphSpec, StateSpec, TensorSpec

ROW_FILE = "row.onnx"


def has_row_graph(stepper) -> bool:
    return hasattr(stepper, "row_states")


def row_state_specs(stepper, width: int) -> list[StateSpec]:
    """The step module's ``row`` states (empty for models without a per-row graph)."""
    if not has_row_graph(stepper):
        return []
    return [StateSpec(name, (BATCH, *shape), "float32", "zeros", "row", source)
            for name, source, shape in stepper.row_states(width)]


def all_state_specs(stepper, width: int) -> list[StateSpec]:
    return state_specs(stepper, width) + row_state_specs(stepper, width)


def row_example(row_module, stepper, channels: int, width: int, batch: int) -> tuple:
    """Example row-graph inputs in ``row_module.input_names()`` order."""
    specs = {s.name: s for s in all_state_specs(stepper, width)}
    args = []
    for name in row_module.input_names():
        if name == "row_pixels":
            args.append(torch.zeros(batch, channels, width, dtype=torch.long))
        elif name == "row":
            args.append(torch.tensor(1))
        else:
            args.append(torch.zeros(batch, *specs[name].shape[1:]))
    return tuple(args)


def row_graph(row_module, stepper, channels: int, width: int) -> GraphSpec:
    specs = {s.name: s for s in all_state_specs(stepper, width)}
    inputs = []
    for name in row_module.input_names():
        if name == "row_pixels":
            inputs.append(TensorSpec(name, "int64", (BATCH, channels, width)))
        elif name == "row":
            inputs.append(TensorSpec(name, "int64", ()))
        else:
            inputs.append(TensorSpec(name, "float32", tuple(specs[name].shape)))
    by_source = {s.source: s for s in row_state_specs(stepper, width)}
    outputs = [TensorSpec(o, "float32", tuple(by_source[o].shape)) for o in row_module.output_names()]
    return GraphSpec(ROW_FILE, tuple(inputs), tuple(outputs))


def export_row(model, stepper, channels: int, width: int, path: Path) -> torch.nn.Module:
    from pixelrt.export.onnx_export import TRACE_BATCH, _export

    row_module = model.row_stepper().eval()
    args = row_example(row_module, stepper, channels, width, TRACE_BATCH)
    batch = torch.export.Dim("batch", min=1, max=65536)
    dyn = tuple(None if a.dim() == 0 else {0: batch} for a in args)
    _export(row_module, args, path, row_module.input_names(), row_module.output_names(), dyn)
    return row_module


def validate_row(bundle: Bundle, model, batch: int, seed: int = 0) -> float:
    """ORT vs PyTorch on the row graph with random inputs; max |delta| of its outputs (raises beyond budget)."""
    from pixelrt.export.validate import LOGP_BUDGET
    from pixelrt.models.reference import TorchRowRunner
    from pixelrt.runtime.ort_backend import OrtBackend

    rng = np.random.default_rng(seed)
    spec = bundle.graphs["row"]
    torch_row = TorchRowRunner(model)
    worst = 0.0
    with OrtBackend(bundle.graph_path("row")) as ort_row:
        for i in range(2):
            feeds = {}
            for inp in spec.inputs:
                shape = [batch if d == BATCH else d for d in inp.shape]
                if inp.name == "row_pixels":
                    feeds[inp.name] = rng.integers(0, bundle.image.levels, shape).astype(np.int64)
                elif inp.name == "row":
                    feeds[inp.name] = np.array(i, np.int64)
                else:
                    feeds[inp.name] = rng.standard_normal(shape).astype(np.float32)
            a, b = ort_row.infer(feeds), torch_row.infer(feeds)
            worst = max(worst, *(float(np.abs(a[k] - b[k]).max()) for k in spec.output_names()))
    if worst > LOGP_BUDGET:
        raise ParityError(f"export validation failed: row graph |delta| {worst:.2e} > {LOGP_BUDGET:.0e} "
                          "(ONNX Runtime vs PyTorch); the graph is not faithful; report this with the checkpoint.")
    return worst
