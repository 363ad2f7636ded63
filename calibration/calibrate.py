"""`pixelrt calibrate`: an FP32 bundle -> an FP16 or INT8 (Q/DQ) bundle, judged by its bits/dim.

The new bundle has the same manifest format and graph I/O (inputs and outputs stay
FP32/uint8/int64, so every runtime drives it unchanged); the manifest says
``precision`` and carries a ``calibration`` block: method, calibration set (name,
size, content sha256) and the measured held-out bits/dim next to the FP32 bundle's.
It is written into a temporary sibling, loaded and measured through the runtime,
and only then renamed into place; on any error nothing is written.
"""
from __future__ import annotations

import datetime
import hashlib
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

import pixelrt
from pixelrt.atomic import atomic_directory, check_replaceable, is_bundle, scratch_directory
from pixelrt.calibration.fp16 import convert_fp16
from pixelrt.calibration.int8 import METHODS, quantize_int8
from pixelrt.calibration.measure import BundleMeasure, bpd_budget, measure_bundle, step_vs_full_budget
from pixelrt.calibration.readers import FeedListReader, image_feeds, step_feeds
from pixelrt.errors import BundleError, DataError, ParityError, PixelrtError
from pixelrt.bundle import REEXPORT, Bundle, Manifest, load_bundle
from pixelrt.bundle.files import read_verified
from pixelrt.bundle.writer import pending, write_manifest
from pixelrt.runtime.evaluate import check_bundle_images, evaluate
from pixelrt.runtime.ort_backend import OrtBackend

PRECISIONS = ("fp16", "int8")
NEEDED_GRAPHS = ("full", "step")


@dataclass
class CalibrationResult:
    bundle: Bundle
    precision: str
    method: str | None
    fp32_bpd: float
    bpd: float
    candidates: dict = field(default_factory=dict)  # method -> held-out bits/dim (int8)
    measure: BundleMeasure | None = None

    @property
    def delta_bpd(self) -> float:
        return self.bpd - self.fp32_bpd


def data_record(name: str, x: np.ndarray) -> dict:
    """Name, size and content hash of an image set (hash over shape, dtype and bytes)."""
    h = hashlib.sha256(f"{x.shape}|{x.dtype}|".encode())
    h.update(np.ascontiguousarray(x).tobytes())
    return {"name": name, "images": int(len(x)), "shape": list(x.shape[1:]), "sha256": h.hexdigest()}


CALIBRATED_KINDS = ("autoregressive",)  # the bundle kinds calibration writes reduced-precision copies of


def _check_inputs(bundle: Bundle, precision: str, method: str, calib_x: np.ndarray | None,
                  heldout_x: np.ndarray) -> None:
    if precision not in PRECISIONS:
        raise PixelrtError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if bundle.precision != "fp32":
        raise BundleError(f"{bundle.root} is already a {bundle.precision} bundle; calibrate the FP32 bundle "
                          "that `pixelrt export` wrote")
    if bundle.kind not in CALIBRATED_KINDS:
        raise BundleError(f"{bundle.root} is a {bundle.kind} bundle ({bundle.family}); `pixelrt calibrate` writes "
                          "FP16 / INT8 copies of single autoregressive bundles (full + step graphs) only. Calibrate "
                          "an exported pixelcnn, gated, pixelcnnpp, rowlstm or diagbilstm bundle; for this one, "
                          "`pixelrt build-engine` builds FP32 engines")
    missing = [g for g in NEEDED_GRAPHS if g not in bundle.graphs]
    if missing:
        raise BundleError(f"bundle {bundle.root} has no {' or '.join(repr(g) for g in missing)} graph (it has: "
                          f"{', '.join(bundle.graphs) or 'none'}); calibration converts and measures both the full "
                          "and the step graph: re-run `pixelrt export CKPT -o BUNDLE/`")
    if precision == "int8" and method not in METHODS + ("auto",):
        raise PixelrtError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}, auto")
    if precision == "int8" and (calib_x is None or len(calib_x) == 0):
        raise DataError("the calibration set is empty: INT8 needs real images to set its ranges; pass --data "
                        "with images of the bundle's shape (and --calib-images >= 1)")
    if len(heldout_x) == 0:
        raise DataError("the held-out set is empty: the new bundle is judged by its held-out bits/dim; pass "
                        "--data with a test split (or --heldout >= 1)")
    if calib_x is not None and len(calib_x):
        check_bundle_images(bundle, calib_x, "calibration data")
    check_bundle_images(bundle, heldout_x, "held-out data")


def calibrate_bundle(src: str | Path, out: str | Path, precision: str, heldout_x: np.ndarray,
                     calib_x: np.ndarray | None = None, data_name: str = "images", method: str = "auto",
                     overwrite: bool = False, step_images: int = 64, step_feeds_max: int = 256,
                     teacher: int = 8, samples: int = 8, seed: int = 0, progress: bool = False,
                     log=print, judge: bool = True) -> CalibrationResult:
    """Write an FP16 or INT8 copy of the FP32 bundle ``src`` at ``out`` and measure it on ``heldout_x``.

    ``judge=False`` (bench only: random weights, speed) still measures and records, but does not
    refuse a bundle whose step graph misses the step-vs-full budget."""
    bundle = load_bundle(src)
    out = Path(out)
    _check_inputs(bundle, precision, method, calib_x, heldout_x)
    check_replaceable(out, overwrite, protect=[bundle.root], accept=is_bundle, what="bundle")  # before measuring
    heldout_x = check_bundle_images(bundle, heldout_x, "held-out data")
    log(f"measuring the FP32 bundle on {len(heldout_x)} held-out images")
    fp32 = measure_bundle(bundle, heldout_x, teacher=teacher, samples=samples, seed=seed, progress=progress)
    candidates: dict[str, float] = {}
    chosen = None
    with atomic_directory(out, overwrite=overwrite, protect=[bundle.root], accept=is_bundle, what="bundle") as tmp:
        _copy_other_files(bundle, tmp)
        if precision == "fp16":
            records = {}
            for g in NEEDED_GRAPHS:
                log(f"converting {bundle.graphs[g].file} to FP16 (likelihood tail and I/O stay FP32)")
                model16, records[g] = convert_fp16(onnx.load_model_from_string(bundle.graph_path(g).read()))
                onnx.save(model16, tmp / bundle.graphs[g].file)
            conversion = {"fp16": records}
        else:
            conversion, chosen, candidates = _int8(bundle, tmp, calib_x, heldout_x, method, step_images,
                                                   step_feeds_max, seed, progress, log)
        manifest = write_manifest(tmp, _manifest(bundle, precision, chosen, conversion, data_record(
            f"{data_name} (calibration)", calib_x) if calib_x is not None and len(calib_x) else None))
        log(f"measuring the {precision} bundle: held-out bits/dim, step vs full graph")
        new = load_bundle(tmp)
        m = measure_bundle(new, heldout_x, teacher=teacher, samples=samples, seed=seed, progress=progress)
        budget = bpd_budget(precision, fp32.mean_bpd)
        svf_budget = step_vs_full_budget(precision, fp32.mean_bpd)
        if not np.isfinite(m.bits_per_dim).all():
            raise ParityError(f"the {precision} full graph gives non-finite log-likelihoods; nothing was written")
        if judge and m.step_vs_full_bpd > svf_budget:
            raise ParityError(f"the {precision} step graph disagrees with its full graph by {m.step_vs_full_bpd:.2e} "
                              f"bits/dim per image (budget {svf_budget:.1e}); nothing was written")
        measured = {
            "heldout": data_record(f"{data_name} (held-out)", heldout_x),
            "bits_per_dim_fp32": fp32.mean_bpd, f"bits_per_dim_{precision}": m.mean_bpd,
            "delta_bits_per_dim": m.mean_bpd - fp32.mean_bpd,
            "relative_increase": (m.mean_bpd - fp32.mean_bpd) / fp32.mean_bpd,
            "max_abs_delta_bits_per_dim_per_image": float(np.abs(m.bits_per_dim - fp32.bits_per_dim).max()),
            "max_abs_delta_logp": float(np.abs(m.logp - fp32.logp).max()),
            "budget_bits_per_dim": budget, "within_budget": bool(abs(m.mean_bpd - fp32.mean_bpd) <= budget),
            "step_vs_full_max_bits_per_dim": m.step_vs_full_bpd, "step_vs_full_budget": svf_budget,
            "step_vs_full_max_logp_teacher_forced": m.teacher_max_dlogp,
            "sample_agreement_with_fp32": float((m.samples == fp32.samples).mean()),
            "candidates_bits_per_dim": candidates, "runtime": f"onnxruntime {onnxruntime.__version__} CPU",
        }
        write_manifest(tmp, replace(manifest, calibration={**manifest.calibration, "measured": measured}))
    return CalibrationResult(load_bundle(out), precision, chosen, fp32.mean_bpd, m.mean_bpd, candidates, m)


def _copy_other_files(bundle: Bundle, tmp: Path) -> None:
    """Every listed file but the graphs, from the bytes the manifest verified (never from outside the bundle)."""
    graph_files = {g.file for g in bundle.graphs.values()}
    for name, rec in bundle.manifest.files.items():
        if name not in graph_files and not (tmp / name).exists():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(read_verified(bundle.root, name, rec.sha256, rec.bytes, BundleError, REEXPORT))


def _int8(bundle, tmp, calib_x, heldout_x, method, step_images, step_feeds_max, seed, progress, log):
    full_reader = FeedListReader(image_feeds(bundle, calib_x))
    methods = METHODS if method == "auto" else (method,)
    candidates, records = {}, {}
    full_file = bundle.graphs["full"].file
    with scratch_directory("calib") as work:
        for m in methods:
            log(f"INT8 full graph, {m} calibration on {len(calib_x)} images")
            path = Path(work) / f"{m}.onnx"
            records[m] = quantize_int8(onnx.load_model_from_string(bundle.graph_path("full").read()), full_reader, m, path)
            if len(methods) > 1:
                with OrtBackend(path) as full:
                    candidates[m] = evaluate(full, bundle, heldout_x).mean_bits_per_dim
                log(f"  {m}: held-out {candidates[m]:.5f} bits/dim")
        chosen = min(candidates, key=candidates.get) if candidates else methods[0]
        shutil.copy2(Path(work) / f"{chosen}.onnx", tmp / full_file)
    n_step = min(step_images, len(calib_x))
    log(f"recording step feeds: step loop teacher-forced on {n_step} calibration images")
    with OrtBackend(bundle.graph_path("step")) as step:
        feeds = step_feeds(bundle, step, calib_x[:n_step], max_steps=step_feeds_max, seed=seed, progress=progress)
    log(f"INT8 step graph, {chosen} calibration on {len(feeds)} recorded steps")
    step_record = quantize_int8(onnx.load_model_from_string(bundle.graph_path("step").read()), FeedListReader(feeds), chosen,
                                tmp / bundle.graphs["step"].file)
    conversion = {"int8": {"full": records[chosen], "step": step_record, "step_calibration_images": n_step}}
    return conversion, chosen, candidates


def drop_wavefront(m: Manifest) -> Manifest:
    """The manifest without its wavefront graph: a reduced-precision copy samples with the raster loop, whose
    step graph calibration converts and measures (the wavefront graph is not converted; docs/precision.md)."""
    front = m.schedule.wavefront if m.schedule else None
    if front is None:
        return m
    file = m.graphs[front.graph].file
    return replace(m, graphs={k: g for k, g in m.graphs.items() if k != front.graph},
                   files={k: r for k, r in m.files.items() if k != file},
                   schedule=replace(m.schedule, wavefront=None))


def _manifest(bundle: Bundle, precision: str, method: str | None, conversion: dict, calib: dict | None) -> Manifest:
    m = drop_wavefront(bundle.manifest)
    producer = {"fp16": "pixelrt calibrate (onnxruntime.transformers.float16)",
                "int8": "pixelrt calibrate (onnxruntime.quantization, QDQ)"}[precision]
    files = dict(m.files)
    for g in m.graphs.values():
        old = m.files[g.file]
        files[g.file] = pending({**old.provenance, "producer": producer, "onnxruntime": onnxruntime.__version__,
                                 "fp32_sha256": old.sha256})
    return replace(m, precision=precision, files=files,
                   calibration={"precision": precision, "method": method, "calibration_set": calib,
                                "from_bundle": str(bundle.root), **conversion},
                   versions={**m.versions, "pixelrt": pixelrt.__version__, "onnx": onnx.__version__,
                             "onnxruntime": onnxruntime.__version__},
                   created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
