"""Write a bundle: graphs, reference batch, manifest with checksums; validate; then rename into place.

The directory appears whole or not at all: everything is written into a
temporary sibling, checked (checksums through the runtime's own loader, then
ONNX Runtime against PyTorch) and only then renamed to the target.
"""
from __future__ import annotations

import datetime
import platform
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch

import pixelrt
from pixelrt.atomic import atomic_directory
from pixelrt.export.onnx_export import OPSET, TRACE_BATCH, export_full, export_step
from pixelrt.export.row_graph import ROW_FILE, all_state_specs, export_row, has_row_graph, row_graph, validate_row
from pixelrt.export.spec import full_graph, step_graph, step_schedule
from pixelrt.export.validate import check_finite_model, finite_validation, ExportCheck, check_reference_images, validate_bundle
from pixelrt.bundle import Bundle, HeadSpec, ImageSpec, Manifest, ReferenceSpec, StepSchedule, load_bundle
from pixelrt.bundle.records import FileRecord
from pixelrt.bundle.writer import pending, write_manifest

REFERENCE = "reference.npz"


@dataclass
class ExportResult:
    bundle: Bundle
    check: ExportCheck


def export_bundle(model: torch.nn.Module, image: ImageSpec, reference_x: np.ndarray, out: str | Path,
                  source: dict | None = None, overwrite: bool = False, log=print,
                  context: dict | None = None) -> ExportResult:
    """Export ``model`` for images of ``image`` shape into the bundle directory ``out``.

    reference_x: a fixed batch of real images (uint8 NCHW) whose log-likelihoods are stored
    as the bundle's reference and used to validate the graphs.
    source: provenance recorded in the manifest (checkpoint path, data set, ...).
    context: the reference images' conditioning inputs, for conditional models (e.g. {"label": (N,)}).
    """
    if getattr(model, "family", None) == "pixelcnnpp":  # row + step graphs, multi-rate states
        from pixelrt.export.pixelcnnpp_export import export_pixelcnnpp_bundle

        return export_pixelcnnpp_bundle(model, image, reference_x, out, source, overwrite, log)
    if getattr(model, "family", None) == "gated":  # three graphs and context inputs: its own writer
        from pixelrt.export.gated_export import export_gated_bundle

        return export_gated_bundle(model, image, reference_x, out, source, overwrite, log, context)
    model = model.eval()
    C, H, W = image.shape
    reference_x = check_reference_images(image, reference_x)
    check_finite_model(model)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        log(f"exporting full.onnx (teacher-forced log-likelihood, {C}x{H}x{W}, {image.levels} levels)")
        export_full(model, image.shape, tmp / "full.onnx")
        log("exporting step.onnx (one sub-pixel from cached rows, sampling inside the graph)")
        stepper = export_step(model, C, W, tmp / "step.onnx")
        row_module = None
        if has_row_graph(stepper):
            log(f"exporting {ROW_FILE} (run once per finished row, unrolled over its {W} columns)")
            row_module = export_row(model, stepper, C, W, tmp / ROW_FILE)
        with torch.inference_mode():
            ll = model(torch.from_numpy(reference_x)).double().numpy()
        np.savez(tmp / REFERENCE, x=reference_x, loglik=ll)
        manifest = write_manifest(tmp, _manifest(model, image, stepper, ll, source or {}, row_module))
        check_x = reference_x if len(reference_x) != TRACE_BATCH else np.concatenate([reference_x, reference_x[:1]])
        log(f"validating with ONNX Runtime at batch {len(check_x)} (traced at batch {TRACE_BATCH})")
        check = validate_bundle(load_bundle(tmp), model, check_x)
        validation = check.as_dict()
        if row_module is not None:
            validation["row_max_delta"] = validate_row(load_bundle(tmp), model, len(check_x))
        write_manifest(tmp, replace(manifest, validation=finite_validation(validation)))
    return ExportResult(load_bundle(out), check)


PRODUCER = f"torch {torch.__version__} (torch.onnx dynamo exporter)"
CATEGORICAL = "inverse-cdf"


def file_meta(producer: str = PRODUCER) -> FileRecord:
    """A graph file's record before write_manifest fills its size and sha256: opset and producer."""
    return pending({"opset": OPSET, "producer": producer, "onnx": onnx.__version__})


def versions() -> dict:
    return {"pixelrt": pixelrt.__version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def loglik_reference(image: ImageSpec, loglik: np.ndarray, file: str = REFERENCE) -> ReferenceSpec:
    return ReferenceSpec(file, int(len(loglik)), {"loglik_nats": tuple(float(v) for v in loglik),
                                                   "bits_per_dim": tuple(float(v) for v in image.bits_per_dim(loglik))})


def autoregressive_manifest(model, image: ImageSpec, graphs: dict, states, schedule: StepSchedule,
                            loglik: np.ndarray, source: dict, head: HeadSpec | None = None,
                            conditioning=()) -> Manifest:
    """The manifest of an autoregressive bundle: graphs (GraphSpec), states, schedule and reference."""
    d = model.describe()
    return Manifest(
        kind="autoregressive", family=d["family"], config=d["config"], image=image,
        head=head or HeadSpec("categorical", image.levels, CATEGORICAL), conditioning=tuple(conditioning),
        graphs=graphs, state=tuple(states), schedule=schedule,
        files={**{g.file: file_meta() for g in graphs.values()}, REFERENCE: pending()},
        reference=loglik_reference(image, loglik), source=source, versions=versions(), created=now())


def _manifest(model, image: ImageSpec, stepper, loglik: np.ndarray, source: dict, row_module=None) -> Manifest:
    C, H, W = image.shape
    states = all_state_specs(stepper, W)
    graphs = {"full": full_graph(C, H, W), "step": step_graph(C, states)}
    if row_module is not None:
        graphs["row"] = row_graph(row_module, stepper, C, W)
    return autoregressive_manifest(model, image, graphs, states,
                                   step_schedule(C, row_graph=None if row_module is None else "row"), loglik, source)
