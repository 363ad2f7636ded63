"""Export a Multi-Scale PixelRNN as ONE bundle (layout: runtime/multiscale.py).

stage1/ is written by the ordinary ``export_bundle`` (full, step graphs, ring-row states,
validated ORT vs PyTorch). stage2/ is an autoregressive bundle whose graphs take the bias
field as the schedule's context ``bias``: full(x, bias) and step(..., bias) gathering
bias[:, :, row, col] inside the graph. cond.onnx maps the coarse image to the bias field.
The top manifest (kind "multiscale") lists every file of the three parts with its sha256.
Validation compares ORT with PyTorch on each graph and the whole model's bits/dim.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from pixelrt.atomic import atomic_directory
from pixelrt.errors import ParityError, PixelrtError
from pixelrt.export.bundle_writer import (REFERENCE, autoregressive_manifest, export_bundle, file_meta, loglik_reference,
                                         now, versions)
from pixelrt.export.onnx_export import TRACE_BATCH, _export, step_example
from pixelrt.export.spec import full_graph, state_specs, step_graph, step_schedule
from pixelrt.models.layers import freeze_masks
from pixelrt.models.multiscale import MultiScale, coarsen
from pixelrt.export.validate import check_finite_model, finite_validation, check_reference_images
from pixelrt.bundle import (MANIFEST, ConditioningSpec, GraphSpec, HeadSpec, ImageSpec, Manifest, PartSpec, TensorSpec,
                            load_bundle)
from pixelrt.bundle.writer import pending, write_manifest

BPD_BUDGET, LOGP_BUDGET = 1e-5, 1e-4  # the foundation's FP32 budgets
CONTEXT = "bias"


@dataclass
class MultiScaleCheck:
    full_max_dbpd: float     # whole model, ORT (3 graphs) vs PyTorch, bits/dim
    stage2_max_dlogp: float  # stage 2 full graph per sub-pixel, nats
    cond_max_dbias: float    # cond graph vs PyTorch
    step_max_dlogp: float    # both stages' step graphs, teacher-forced on one image, vs PyTorch per sub-pixel

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _cond_io(C: int, s: int, F: int, n: int) -> GraphSpec:
    return GraphSpec("cond.onnx", (TensorSpec("coarse", "uint8", ("batch", C, s, s)),),
                     (TensorSpec(CONTEXT, "float32", ("batch", F, n, n)),))


def _export_stage2(model: MultiScale, image: ImageSpec, ref_x: np.ndarray, root: Path) -> None:
    C, H, W = image.shape
    F = model.cond.k_cond.out_channels
    cond_model = freeze_masks(model.conditional())
    batch = torch.export.Dim("batch", min=1, max=65536)
    x = torch.zeros(TRACE_BATCH, C, H, W, dtype=torch.uint8)
    bias = torch.zeros(TRACE_BATCH, F, H, W)
    _export(cond_model, (x, bias), root / "full.onnx", ["x", CONTEXT], ["loglik", "logp"], ({0: batch}, {0: batch}))
    stepper = cond_model.stepper().eval()
    args = (*step_example(stepper, C, W), torch.zeros(TRACE_BATCH, F, H, W))
    dyn = ({0: batch}, None, None, None, {0: batch}, {0: batch}, *({0: batch} for _ in stepper.caches), {0: batch})
    _export(stepper, args, root / "step.onnx", stepper.input_names(), stepper.output_names(), dyn)
    with torch.inference_mode():
        c = torch.from_numpy(coarsen(torch.from_numpy(ref_x)).numpy())
        ll = cond_model(torch.from_numpy(ref_x), model.cond(c))[0].double().numpy()
    np.savez(root / REFERENCE, x=ref_x, loglik=ll, **{CONTEXT: model.cond(c).detach().numpy()})
    ctx = [ConditioningSpec(CONTEXT, "float32", (F, H, W), "map")]
    states = state_specs(stepper, W)
    graphs = {"full": full_graph(C, H, W, ctx), "step": step_graph(C, states, ctx)}
    write_manifest(root, autoregressive_manifest(model.stage2, image, graphs, states, step_schedule(C, context=ctx), ll,
                                                 {"role": "multiscale stage 2 (given the bias field)"},
                                                 conditioning=ctx))


def export_multiscale(model: MultiScale, image: ImageSpec, reference_x: np.ndarray, out: str | Path,
                      source: dict | None = None, overwrite: bool = False, log=print):
    """Write and validate the multi-scale bundle at ``out``; returns (top Bundle, MultiScaleCheck)."""
    model = model.eval()
    C, H, W = image.shape
    if H % 2 or W % 2:
        raise PixelrtError(f"multi-scale needs even image sides, got {H}x{W}")
    ref_x = check_reference_images(image, reference_x)
    check_finite_model(model)
    s_image = ImageSpec(C, H // 2, W // 2, image.levels)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        log(f"stage 1: Row LSTM on the {H // 2}x{W // 2} coarse image (full, step graphs)")
        coarse_ref = coarsen(torch.from_numpy(ref_x)).numpy()
        export_bundle(model.stage1, s_image, coarse_ref, tmp / "stage1", source={"role": "multiscale stage 1"},
                      log=lambda m: None)
        log("cond.onnx: coarse image -> deconvolutions -> K^cond bias field")
        batch = torch.export.Dim("batch", min=1, max=65536)
        _export(model.cond, (torch.zeros(TRACE_BATCH, C, H // 2, W // 2, dtype=torch.uint8),), tmp / "cond.onnx",
                ["coarse"], ["bias"], ({0: batch},))
        log(f"stage 2: Row LSTM on {H}x{W} given the bias field (full, step graphs)")
        (tmp / "stage2").mkdir()
        _export_stage2(model, image, ref_x, tmp / "stage2")
        with torch.inference_mode():
            ll = model(torch.from_numpy(ref_x)).double().numpy()
        np.savez(tmp / REFERENCE, x=ref_x, loglik=ll)
        manifest = write_manifest(tmp, _top_manifest(model, image, tmp, ll, source or {}))
        check = validate_multiscale(tmp, model, ref_x)
        write_manifest(tmp, replace(manifest, validation=finite_validation(check.as_dict())))
    return load_bundle(out), check


def _top_manifest(model: MultiScale, image: ImageSpec, root: Path, ll: np.ndarray, source: dict) -> Manifest:
    C, H, W = image.shape
    files = {"cond.onnx": file_meta(), REFERENCE: pending()}
    for stage in ("stage1", "stage2"):
        sub = load_bundle(root / stage).manifest
        files[f"{stage}/{MANIFEST}"] = pending()
        files.update({f"{stage}/{name}": pending(r.provenance) for name, r in sub.files.items()})
    F = model.cond.k_cond.out_channels
    coarse = ImageSpec(C, H // 2, W // 2, image.levels)
    d = model.describe()
    return Manifest(
        kind="multiscale", family=d["family"], config=d["config"], image=image,
        head=HeadSpec("categorical", image.levels, "inverse-cdf"), graphs={"cond": _cond_io(C, H // 2, F, H)},
        parts={"stage1": PartSpec("stage1", coarse, None, "stage 1: the coarse image"),
               "stage2": PartSpec("stage2", image, CONTEXT, "stage 2: the image given the bias field")},
        files=files, reference=loglik_reference(image, ll), source=source, versions=versions(), created=now(),
        notes={"coarsen": {"factor": 2, "rule": "mean of each 2x2 block rounded half-down: floor((sum + 1) / 4)"},
               "cond": {"graph": "cond", "input": "coarse", "output": CONTEXT, "runs": "once per image"},
               "loglik": "log p1(coarse(x)) + log p2(x | coarse(x)): a lower bound on log p(x)"})


def validate_multiscale(root: Path, model: MultiScale, x: np.ndarray) -> MultiScaleCheck:
    """ORT vs PyTorch at a batch other than the traced one: cond graph, stage 2 full graph, whole bits/dim;
    both step graphs teacher-forced on one image (stage 1's step graph is also checked by export_bundle)."""
    from pixelrt.runtime.multiscale import bias_field, evaluate_multiscale, open_multiscale, sample_multiscale
    from pixelrt.runtime.ort_backend import OrtBackend

    if len(x) == TRACE_BATCH:
        x = np.concatenate([x, x[:1]])
    ms = open_multiscale(root)
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        c = coarsen(xt)
        bias_t = model.cond(c)
        logp2_t = model.conditional().log_prob(xt, bias_t).numpy()
        ll_t = model(xt).double().numpy()
        p1_t, p2_t = model.log_prob_parts(xt[:1])
    with OrtBackend(ms.top.graph_path("cond")) as cond:
        bias = bias_field(cond, c.numpy())
    with OrtBackend(ms.stage2.graph_path("full")) as full2:
        logp2 = full2.infer({"x": x, CONTEXT: bias_t.numpy()})["logp"]
    res = evaluate_multiscale(ms, x)
    forced = sample_multiscale(ms, 1, seed=0, force=x[:1])
    dstep = max(float(np.abs(forced.logp1 - p1_t.numpy()).max()), float(np.abs(forced.logp2 - p2_t.numpy()).max()))
    check = MultiScaleCheck(float(np.abs(res.bits_per_dim - ms.image.bits_per_dim(ll_t)).max()),
                            float(np.abs(logp2 - logp2_t).max()), float(np.abs(bias - bias_t.numpy()).max()), dstep)
    if check.full_max_dbpd > BPD_BUDGET or max(check.stage2_max_dlogp, check.cond_max_dbias, dstep) > LOGP_BUDGET:
        raise ParityError(f"multi-scale export validation failed (ONNX Runtime vs PyTorch): {check.as_dict()} "
                          f"over budgets |d bpd| {BPD_BUDGET:.0e}, |d log p| {LOGP_BUDGET:.0e}")
    return check
