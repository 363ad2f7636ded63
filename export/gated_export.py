"""Export a Gated PixelCNN: full.onnx, step.onnx (one sub-pixel) and row.onnx (the vertical stack,
once per finished row), with optional context inputs ``label`` / ``cond``, validated before the bundle
is moved into place (ORT against PyTorch at a batch the graphs were not traced with).

Manifest additions over a PixelCNN bundle (step loop v2): ``row`` states ``vrows_0``, ``vrows_1`` and
``link`` updated by the row graph, ``schedule.row_graph = "row"``, ``schedule.context`` and
``conditioning`` records (``label`` with its class count, ``cond`` with its map shape).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pixelrt.atomic import atomic_directory
from pixelrt.errors import ParityError, PixelrtError
from pixelrt.export.onnx_export import TRACE_BATCH, _export
from pixelrt.export.spec import (BATCH, context_io, full_graph, state_input, state_output, state_specs, step_graph,
                                 step_schedule)
from pixelrt.export.validate import check_finite_model, finite_validation, BPD_BUDGET, LOGP_BUDGET, check_reference_images
from pixelrt.models.gated_layers import HorizontalConv
from pixelrt.models.layers import freeze_masks
from pixelrt.bundle import ConditioningSpec, GraphSpec, ImageSpec, Manifest, StateSpec, TensorSpec, load_bundle
from pixelrt.bundle.writer import write_manifest

REFERENCE = "reference.npz"


def conditioning_records(model) -> list[ConditioningSpec]:
    """Manifest records of the model's context inputs (per-image shapes)."""
    cfg, out = model.config, []
    if cfg.num_classes:
        out.append(ConditioningSpec("label", "int64", (), "class", cfg.num_classes))
    if cfg.cond_shape:
        out.append(ConditioningSpec("cond", "float32", tuple(cfg.cond_shape), "map"))
    return out


def row_states(row_module, channels: int, width: int) -> list[StateSpec]:
    return [StateSpec(name, (BATCH, *shape), "float32", "zeros", "row", f"new_{name}")
            for name, shape in row_module.state_shapes(channels, width).items()]


class GatedFullGraph(nn.Module):
    """uint8 x (B, C, H, W) [+ label, cond] -> (loglik (B,) nats, logp (B, C, H, W) nats)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.names = model, list(model.context_names)

    def forward(self, x, *context):
        logp = self.model.log_prob(x, **dict(zip(self.names, context)))
        return logp.flatten(1).sum(1), logp


def frozen(model):
    """freeze_masks for the PixelCNN convs plus the horizontal convs' masks (kernels stored pre-masked)."""
    model = freeze_masks(model)
    for m in model.modules():
        if isinstance(m, HorizontalConv):
            with torch.no_grad():
                m.weight.copy_(m.weight * m.mask)
            m.premasked = True
    return model


def _dyn(batch, tensors, fixed: int) -> tuple:
    """dynamic_shapes for forward(a_1..a_fixed, *rest): the batch axis of every non-scalar input;
    torch.export wants the varargs as one nested tuple."""
    dims = [{0: batch} if t.dim() > 0 else None for t in tensors]
    return (*dims[:fixed], tuple(dims[fixed:])) if len(dims) > fixed else tuple(dims)


def export_graphs(model, image: ImageSpec, root: Path):
    """Trace full.onnx, step.onnx and row.onnx into ``root``; returns (stepper, row module)."""
    C, H, W = image.shape
    names = list(model.context_names)
    ctx = model.example_context(TRACE_BATCH)
    ctx_args = tuple(ctx[k] for k in names)
    batch = torch.export.Dim("batch", min=1, max=65536)

    x = torch.zeros(TRACE_BATCH, C, H, W, dtype=torch.uint8)
    args = (x, *ctx_args)
    _export(GatedFullGraph(frozen(model)), args, root / "full.onnx", ["x", *names], ["loglik", "logp"],
            _dyn(batch, args, 1))

    stepper, rows = model.stepper().eval(), model.row_stepper().eval()
    shapes = rows.state_shapes(C, W)
    B = TRACE_BATCH
    args = (torch.zeros(B, C, dtype=torch.long), torch.tensor(1), torch.tensor(1), torch.tensor(0),
            torch.full((B,), -1, dtype=torch.long), torch.full((B,), 0.5), *ctx_args,
            *(torch.zeros(B, *c.shape(W, n)) for c, n in stepper.caches), torch.zeros(B, *shapes["link"]))
    _export(stepper, args, root / "step.onnx", stepper.input_names(), stepper.output_names(), _dyn(batch, args, 6))

    args = (torch.zeros(B, C, W, dtype=torch.long), torch.tensor(1), *ctx_args,
            torch.zeros(B, *shapes["vrows_0"]), torch.zeros(B, *shapes["vrows_1"]))
    _export(rows, args, root / "row.onnx", rows.input_names(), rows.output_names(), _dyn(batch, args, 2))
    return stepper, rows


def _row_graph(image: ImageSpec, states: list[StateSpec], context) -> GraphSpec:
    C, _, W = image.shape
    vr = [s for s in states if s.name.startswith("vrows")]
    inputs = (TensorSpec("row_pixels", "int64", (BATCH, C, W)), TensorSpec("row", "int64", ()), *context_io(context),
              *(state_input(s) for s in vr))
    return GraphSpec("row.onnx", inputs, tuple(state_output(s) for s in states))


def manifest(model, image: ImageSpec, stepper, rows, loglik: np.ndarray, source: dict) -> Manifest:
    from pixelrt.export.bundle_writer import autoregressive_manifest

    C, _, W = image.shape
    context = conditioning_records(model)
    states = state_specs(stepper, W) + row_states(rows, C, W)
    graphs = {
        "full": full_graph(C, image.height, W, context),
        "step": step_graph(C, [s for s in states if s.name in stepper.input_names()], context),
        "row": _row_graph(image, [s for s in states if s.update == "row"], context),
    }
    return autoregressive_manifest(model, image, graphs, states, step_schedule(C, context=context, row_graph="row"),
                                   loglik, source, conditioning=context)


@dataclass
class GatedExportCheck:
    full_max_dbpd: float
    full_max_dlogp: float
    step_max_dlogp: float
    step_max_dstate: float
    step_value_agreement: float
    row_max_dstate: float
    positions: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def validate(bundle, model, x: np.ndarray, context: dict[str, np.ndarray], seed: int = 0) -> GatedExportCheck:
    """Full, step and row graphs in ORT against PyTorch (random states, corner/edge/random positions)."""
    from pixelrt.models.reference import TorchRowRunner, TorchStepRunner
    from pixelrt.runtime.evaluate import evaluate
    from pixelrt.runtime.ort_backend import OrtBackend

    with torch.inference_mode():
        ref = model.log_prob(torch.from_numpy(x), **{k: torch.from_numpy(v) for k, v in context.items()}).numpy()
    with OrtBackend(bundle.graph_path("full")) as full:
        res = evaluate(full, bundle, x, context=context)
    dbpd = float(np.abs(res.bits_per_dim - bundle.image.bits_per_dim(ref.reshape(len(x), -1).sum(1))).max())
    dlogp = float(np.abs(res.logp - ref).max())

    rng = np.random.default_rng(seed)
    img, B = bundle.image, len(x)
    C, H, W = img.shape
    positions = sorted({(0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1), (H // 2, W // 2)}
                       | {(int(rng.integers(H)), int(rng.integers(W))) for _ in range(3)})
    ring = [s for s in bundle.state if s.update != "row"]
    rowst = [s for s in bundle.state if s.update == "row"]
    t_step, t_row = TorchStepRunner(model), TorchRowRunner(model)

    def states(specs):
        return {s.name: rng.standard_normal((B, *s.shape[1:])).astype(np.float32) for s in specs}

    dstep = dstate = drow = 0.0
    agree = total = 0
    with OrtBackend(bundle.graph_path("step")) as o_step, OrtBackend(bundle.graph_path("row")) as o_row:
        for (i, j) in positions:
            for c in range(C):
                feeds = {"pixel": rng.integers(0, img.levels, (B, C)).astype(np.int64),
                         "row": np.array(i, np.int64), "col": np.array(j, np.int64), "channel": np.array(c, np.int64),
                         "force": np.where(rng.random(B) < 0.5, rng.integers(0, img.levels, B), -1).astype(np.int64),
                         "noise": rng.random(B, dtype=np.float32), **context, **states(ring + rowst)}
                feeds = {k: feeds[k] for k in t_step.input_names}
                a, b = o_step.infer(feeds), t_step.infer(feeds)
                same = a["value"] == b["value"]
                agree, total = agree + int(same.sum()), total + B
                dstep = max(dstep, float(np.abs(a["logp"] - b["logp"])[same].max(initial=0.0)))
                for s in ring:
                    dstate = max(dstate, float(np.abs(a[s.source] - b[s.source])[same].max(initial=0.0)))
            feeds = {"row_pixels": rng.integers(0, img.levels, (B, C, W)).astype(np.int64),
                     "row": np.array(i, np.int64), **context, **states(rowst)}
            feeds = {k: feeds[k] for k in t_row.input_names}
            a, b = o_row.infer(feeds), t_row.infer(feeds)
            drow = max(drow, max(float(np.abs(a[s.source] - b[s.source]).max()) for s in rowst))
    check = GatedExportCheck(dbpd, dlogp, dstep, dstate, agree / total, drow, len(positions) * C)
    misses = [f"{name} {value:.2e} > {budget:.0e}" for name, value, budget in (
        ("full graph |delta bits/dim|", check.full_max_dbpd, BPD_BUDGET),
        ("full graph |delta log p|", check.full_max_dlogp, LOGP_BUDGET),
        ("step graph |delta log p|", check.step_max_dlogp, LOGP_BUDGET),
        ("step graph |delta state|", check.step_max_dstate, LOGP_BUDGET),
        ("row graph |delta state|", check.row_max_dstate, LOGP_BUDGET)) if not value <= budget]
    if check.step_value_agreement < 1.0:
        misses.append(f"step graph sampled values agree on only {check.step_value_agreement:.1%} of draws")
    if misses:
        raise ParityError("export validation failed (ONNX Runtime vs PyTorch): " + "; ".join(misses)
                          + ". The graph is not faithful; report this with the checkpoint.")
    return check


def export_gated_bundle(model, image: ImageSpec, reference_x: np.ndarray, out, source: dict | None = None,
                        overwrite: bool = False, log=print, context: dict | None = None):
    """The Gated PixelCNN's ``export_bundle``: ``context`` holds the reference images' label / cond
    (random valid ones when omitted, e.g. for a model conditioned on a map no data set provides)."""
    from pixelrt.export.bundle_writer import ExportResult

    model = model.eval()
    reference_x = check_reference_images(image, reference_x)
    check_finite_model(model)
    cond = model.config.cond_shape
    if cond and tuple(cond[1:]) != image.shape[1:]:
        raise PixelrtError(f"the model's conditioning map is {tuple(cond)} but images are {image.shape}; "
                           "the map's H x W must be the image's")
    names = list(model.context_names)
    context = dict(context or {})
    if set(context) - set(names):
        raise PixelrtError(f"reference context has {sorted(set(context) - set(names))}, which the model does not take")
    n = len(reference_x)
    gen = model.example_context(n, seed=1)
    context = {k: np.asarray(context[k] if k in context else gen[k].numpy()) for k in names}
    model.check_context(n, **{k: torch.from_numpy(v) for k, v in context.items()})
    with atomic_directory(out, overwrite=overwrite) as tmp:
        log(f"exporting full.onnx, step.onnx and row.onnx ({'x'.join(map(str, image.shape))}, {image.levels} levels"
            f"{', context: ' + ', '.join(names) if names else ''})")
        stepper, rows = export_graphs(model, image, tmp)
        with torch.inference_mode():
            ll = model(torch.from_numpy(reference_x), **{k: torch.from_numpy(v) for k, v in context.items()})
        ll = ll.double().numpy()
        np.savez(tmp / REFERENCE, x=reference_x, loglik=ll, **context)
        doc = write_manifest(tmp, manifest(model, image, stepper, rows, ll, source or {}))
        idx = np.arange(n if n != TRACE_BATCH else n + 1) % n
        log(f"validating with ONNX Runtime at batch {len(idx)} (traced at batch {TRACE_BATCH})")
        check = validate(load_bundle(tmp), model, reference_x[idx], {k: v[idx] for k, v in context.items()})
        write_manifest(tmp, replace(doc, validation=finite_validation(check.as_dict())))
    return ExportResult(load_bundle(out), check)

