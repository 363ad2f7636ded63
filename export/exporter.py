"""The one exporter: a model's export spec becomes a bundle, validated, then moved into place.

``export_bundle`` works for every family and every kind, and for a user's own model that implements
the step protocol (models/contract.py): it asks the model for its ExportSpec, traces each graph the
spec lists (export/trace.py), stores the reference batch of the spec's kind (export/kinds.py), writes
the manifest from the spec's records, and validates the written bundle with the one validator
(export/validator.py). A composite's parts are written and validated first, each as a bundle of its
own in its sub-folder, then listed with their checksums in the top manifest. The directory appears
whole or not at all (pixelrt.atomic).
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
from pixelrt.atomic import atomic_directory, is_bundle
from pixelrt.bundle import MANIFEST, Bundle, ImageSpec, Manifest, PartSpec, load_bundle
from pixelrt.bundle.records import FileRecord
from pixelrt.bundle.writer import pending, write_manifest
from pixelrt.errors import PixelrtError
from pixelrt.export.kinds import KINDS, REFERENCE
from pixelrt.export.trace import OPSET, TRACE_BATCH, export_graph
from pixelrt.export.validator import check_graphs, raise_on_miss, validation_record
from pixelrt.models.contract import ExportSpec, example_context, export_spec
from pixelrt.runtime.parity import ParityReport

PRODUCER = f"torch {torch.__version__} (torch.onnx dynamo exporter)"


@dataclass
class ExportResult:
    bundle: Bundle
    report: ParityReport  # every measurement, with its budget (the runtime's comparison table)

    @property
    def check(self) -> ParityReport:
        return self.report


def export_bundle(model: torch.nn.Module, image: ImageSpec, reference_x: np.ndarray, out: str | Path,
                  source: dict | None = None, overwrite: bool = False, log=print,
                  context: dict | None = None, wavefront: bool = True) -> ExportResult:
    """Export ``model`` for images of ``image`` shape into the bundle directory ``out``.

    reference_x: real images (uint8 NCHW) whose likelihoods are stored as the bundle's reference and
    used to validate the graphs. context: their conditioning inputs for a conditional model
    (e.g. {"label": (N,)}); valid random ones when omitted. source: provenance for the manifest.
    wavefront: False leaves out a wavefront graph the model offers (``wave_module``; the bundle then samples
    one pixel per call). Raises PixelrtError for a model or input that cannot be exported, ParityError for a
    miss.
    """
    model = model.eval()
    check_finite_model(model)
    try:
        spec = export_spec(model, image, wavefront=wavefront)
    except ValueError as e:  # a geometry the model cannot run at (PixelCNN++ sides, a map of another size)
        raise PixelrtError(f"cannot export for {'x'.join(map(str, image.shape))} images: {e}") from None
    x = check_reference_images(image, reference_x)
    ctx = reference_context(spec, context, len(x))
    protect = [(source or {}).get("checkpoint")]  # never replace the checkpoint being exported
    with atomic_directory(out, overwrite=overwrite, protect=protect, accept=is_bundle, what="bundle") as tmp:
        report = write_spec(spec, tmp, x, ctx, source or {}, log)
    return ExportResult(load_bundle(out), report)


def write_spec(spec: ExportSpec, root: Path, x: np.ndarray, context: dict, source: dict, log) -> ParityReport:
    """Write and validate one (sub-)bundle at ``root``: parts, graphs, reference, manifest."""
    root.mkdir(exist_ok=True)
    parts, rows = {}, []
    for name, part in spec.parts.items():
        px, pctx = part.inputs(x)
        log(f"part {name}/: {part.role}")
        sub = write_spec(part.spec, root / name, px, pctx, {"role": part.role}, lambda m: None)
        rows += [replace(r, check=f"{name}/ {r.check}", key=f"{name}.{r.key}") for r in sub.rows]
        parts[name] = PartSpec(name, part.spec.image, part.context, part.role)
    for name, graph in spec.graphs.items():
        log(f"exporting {graph.spec.file} ({name} graph: {', '.join(graph.spec.input_names())} -> "
            f"{', '.join(graph.spec.output_names())})")
        export_graph(graph.module, graph.spec, root / graph.spec.file, graph.trace)
    arrays, reference = KINDS[spec.kind].reference(spec, x, context)
    np.savez(root / REFERENCE, x=x, **context, **arrays)
    manifest = write_manifest(root, _manifest(spec, root, parts, reference, source))
    check_x, check_ctx = untraced_batch(x, context)
    log(f"validating with ONNX Runtime at batch {len(check_x)} (traced at batch {TRACE_BATCH})")
    bundle = load_bundle(root)
    rows = rows + check_graphs(spec, bundle, check_x, check_ctx) + KINDS[spec.kind].checks(spec, bundle, check_x, check_ctx)
    report = ParityReport(f"export validation of {spec.describe['family']} ({spec.kind})", rows)
    raise_on_miss(report, "" if not source.get("role") else f" in part {root.name}/")
    write_manifest(root, replace(manifest, validation=validation_record(report)))
    return report


def untraced_batch(x: np.ndarray, context: dict) -> tuple[np.ndarray, dict]:
    """The reference batch, one image longer when it has the traced batch size."""
    idx = np.arange(len(x) + 1 if len(x) == TRACE_BATCH else len(x)) % len(x)
    return x[idx], {k: v[idx] for k, v in context.items()}


def reference_context(spec: ExportSpec, context: dict | None, n: int) -> dict[str, np.ndarray]:
    """The reference images' context: as given (checked against the conditioning records), else random."""
    from pixelrt.runtime.conditioning import check_conditioning

    names = spec.context_names()
    context = dict(context or {})
    extra = sorted(set(context) - set(names))
    if extra:
        raise PixelrtError(f"reference context has {extra}, which the model does not take (it takes "
                           f"{names or 'none'})")
    generated = example_context(spec.conditioning, n)
    ctx = {k: np.asarray(context[k] if k in context else generated[k]) for k in names}
    return check_conditioning(_Records(spec), ctx, n) if ctx else {}


class _Records:
    """What runtime.conditioning.check_conditioning reads from a bundle: its conditioning records."""

    def __init__(self, spec: ExportSpec):
        self.manifest = self
        self.conditioning = spec.conditioning
        self.context = tuple(spec.context_names())


def _manifest(spec: ExportSpec, root: Path, parts: dict, reference, source: dict) -> Manifest:
    files: dict[str, FileRecord] = {g.spec.file: file_meta() for g in spec.graphs.values()}
    files[REFERENCE] = pending()
    for name in parts:
        sub = load_bundle(root / name).manifest
        files[f"{name}/{MANIFEST}"] = pending()
        files.update({f"{name}/{f}": pending(r.provenance) for f, r in sub.files.items()})
    d = spec.describe
    return Manifest(kind=spec.kind, family=d["family"], config=d["config"], image=spec.image, head=spec.head,
                    conditioning=tuple(spec.conditioning), graphs={n: g.spec for n, g in spec.graphs.items()},
                    state=tuple(spec.states), schedule=spec.schedule, latent=spec.latent, parts=parts, files=files,
                    reference=reference, source=source, versions=versions(), created=now(), notes=dict(spec.notes))


def export_full(model: torch.nn.Module, shape: tuple[int, int, int], path: str | Path) -> None:
    """Only the full graph of an autoregressive model, for ``shape`` (C, H, W) images (e.g. another size
    than its bundle's): the same module and records ``export_bundle`` traces, without the bundle."""
    from pixelrt.bundle.graphs import full_graph
    from pixelrt.models.contract import FullGraph, check_protocol, conditioning

    check_protocol(model)
    ctx = conditioning(model)
    export_graph(FullGraph(model.eval(), [c.name for c in ctx]), full_graph(*shape, ctx), Path(path))


def file_meta(producer: str = PRODUCER) -> FileRecord:
    """A graph file's record before write_manifest fills its size and sha256: opset and producer."""
    return pending({"opset": OPSET, "producer": producer, "onnx": onnx.__version__})


def versions() -> dict:
    return {"pixelrt": pixelrt.__version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def check_reference_images(image: ImageSpec, reference_x: np.ndarray) -> np.ndarray:
    """The reference batch: non-empty, of the model's shape and levels."""
    if not isinstance(reference_x, np.ndarray) or len(reference_x) == 0:
        raise PixelrtError("the reference batch is empty; export needs at least one real image to validate with")
    return image.check_images(reference_x, "reference images", "reference images are {got} but the model's "
                              "checkpoint is for {want}; pass --data with images of that shape")


def check_finite_model(model: torch.nn.Module) -> None:
    """Refuse to export a model with NaN or infinite weights: its graphs would validate as 'nan'."""
    bad = [n for n, p in model.state_dict().items() if p.is_floating_point() and not bool(torch.isfinite(p).all())]
    if bad:
        raise PixelrtError(f"the model has non-finite weights in {len(bad)} tensors ({', '.join(bad[:3])}"
                           f"{', ...' if len(bad) > 3 else ''}); training diverged: retrain with a lower --lr, or "
                           "export an earlier checkpoint")
