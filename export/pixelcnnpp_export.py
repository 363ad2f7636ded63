"""Export a PixelCNN++ bundle: full.onnx, step.onnx (ul stream, one pixel), row.onnx (u stream, one row).

The resolution branches of both cached graphs are ``torch.cond`` while tracing, so
they export as ONNX ``If`` nodes: a coarse level's work runs only on its grid.
Validation compares every graph with PyTorch at a batch the graphs were not
traced with, and runs the ORT step loop teacher-forced over reference images
against the full graph's conditionals; a miss beyond the FP32 budgets is an
error and the bundle is never moved into place.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from pixelrt.atomic import atomic_directory
from pixelrt.errors import ParityError, PixelrtError
from pixelrt.export.bundle_writer import REFERENCE, ExportResult, autoregressive_manifest
from pixelrt.export.onnx_export import TRACE_BATCH, _export, export_full
from pixelrt.export.spec import BATCH, full_graph, state_input, state_output, step_graph, step_schedule
from pixelrt.export.validate import check_finite_model, finite_validation, BPD_BUDGET, ExportCheck, LOGP_BUDGET, check_reference_images
from pixelrt.models.pixelcnnpp_row import tracing_for_export
from pixelrt.bundle import Bundle, GraphSpec, HeadSpec, ImageSpec, TensorSpec, load_bundle
from pixelrt.bundle.writer import write_manifest
from pixelrt.runtime.ort_backend import OrtBackend

SAMPLER = "gumbel-max component + logistic inverse CDF, clamped and rounded"


def _example(shape, batch, dtype=torch.float32):
    return torch.zeros(batch, *shape, dtype=dtype)


def export_cached_graphs(model, image: ImageSpec, root: Path, batch: int = TRACE_BATCH):
    """Trace step.onnx and row.onnx into ``root``; returns (states, schedule, step module, row module)."""
    C, H, W = image.shape
    states, sched = model.step_plan(W)
    step, row = model.stepper(W).eval(), model.row_stepper(W).eval()
    by_name = {s.name: s for s in states}
    dim = torch.export.Dim("batch", min=1, max=65536)
    force = torch.full((batch, C), -1, dtype=torch.long) if C > 1 else torch.full((batch,), -1, dtype=torch.long)
    s_args = [torch.tensor(1), torch.tensor(1), force, torch.full((batch, step.noise_per_pixel), 0.5)]
    s_args += [_example(by_name[n].shape[1:], batch) for n in step.input_names()[4:]]
    with tracing_for_export():
        _export(step, tuple(s_args), root / "step.onnx", step.input_names(), step.output_names(),
                (None, None, {0: dim}, {0: dim}, tuple({0: dim} for _ in s_args[4:])))
        r_args = [torch.zeros(batch, C, W, dtype=torch.long), torch.tensor(1)]
        r_args += [_example(by_name[n].shape[1:], batch) for n in row.state_names()]
        _export(row, tuple(r_args), root / "row.onnx", row.input_names(), row.output_names(),
                ({0: dim}, None, tuple({0: dim} for _ in r_args[2:])))
    return states, sched, step, row


def graph_io(image: ImageSpec, states, sched, step, row) -> dict:
    C, H, W = image.shape
    step_g = step_graph(C, states, channels_per_substep=C, noise_per_substep=sched.noise_per_substep,
                        inputs=set(step.input_names()), outputs=set(step.output_names()))
    row_states = [s for s in states if s.update == "row"]
    row_g = GraphSpec("row.onnx", (TensorSpec("row_pixels", "int64", (BATCH, C, W)), TensorSpec("row", "int64", ()),
                                   *(state_input(s) for s in row_states)),
                      tuple(state_output(s) for s in row_states))
    return {"full": full_graph(C, H, W), "step": step_g, "row": row_g}


def export_pixelcnnpp_bundle(model, image: ImageSpec, reference_x: np.ndarray, out, source: dict | None = None,
                             overwrite: bool = False, log=print) -> ExportResult:
    """The PixelCNN++ counterpart of :func:`pixelrt.export.bundle_writer.export_bundle` (same contract)."""
    model = model.eval()
    C, H, W = image.shape
    try:
        model.config.check_image(H, W)
    except ValueError as e:
        raise PixelrtError(str(e)) from None
    reference_x = check_reference_images(image, reference_x)
    check_finite_model(model)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        log(f"exporting full.onnx (teacher-forced log-likelihood, {C}x{H}x{W}, {image.levels} levels)")
        export_full(model, image.shape, tmp / "full.onnx")
        log("exporting step.onnx (ul stream, one pixel) and row.onnx (u stream, one row), resolutions as If nodes")
        states, sched, step, row = export_cached_graphs(model, image, tmp)
        with torch.inference_mode():
            ll = model(torch.from_numpy(reference_x)).double().numpy()
        np.savez(tmp / REFERENCE, x=reference_x, loglik=ll)
        head = HeadSpec("discretized-logistic-mixture", image.levels, SAMPLER, mixtures=model.config.mixtures)
        schedule = step_schedule(C, substeps_per_pixel=1, noise_per_substep=sched.noise_per_substep, row_graph="row",
                                 sampler=SAMPLER)
        manifest = write_manifest(tmp, autoregressive_manifest(model, image, graph_io(image, states, sched, step, row),
                                                               states, schedule, ll, source or {}, head=head))
        check_x = reference_x if len(reference_x) != TRACE_BATCH else np.concatenate([reference_x, reference_x[:1]])
        log(f"validating with ONNX Runtime at batch {len(check_x)} (traced at batch {TRACE_BATCH})")
        check = validate_pixelcnnpp(load_bundle(tmp), model, check_x)
        write_manifest(tmp, replace(manifest, validation=finite_validation(check.as_dict())))
    return ExportResult(load_bundle(out), check)


def validate_pixelcnnpp(bundle: Bundle, model, x: np.ndarray, seed: int = 0) -> ExportCheck:
    """Full graph vs PyTorch; step and row graphs vs PyTorch on random states at corner, edge and
    grid positions; the ORT step loop teacher-forced on ``x[:2]`` vs the full graph's conditionals."""
    from pixelrt.models.reference import TorchRowRunner, TorchStepRunner
    from pixelrt.runtime.evaluate import evaluate
    from pixelrt.runtime.sampler import bundle_loop, make_noise

    img = bundle.image
    C, H, W = img.shape
    with torch.inference_mode():
        ref_logp = model.log_prob(torch.from_numpy(x)).numpy()
    with OrtBackend(bundle.graph_path("full")) as full:
        out = evaluate(full, bundle, x)
    dbpd = float(np.abs(out.bits_per_dim - img.bits_per_dim(ref_logp.reshape(len(x), -1).sum(1))).max())
    dlogp = float(np.abs(out.logp - ref_logp).max())
    rng = np.random.default_rng(seed)
    B = len(x)
    t_step, t_row = TorchStepRunner(model, width=W), TorchRowRunner(model, width=W)
    dstep = dstate = 0.0
    agree = total = 0
    positions = sorted({(0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1), (H // 2, W // 2), (2, 2), (4, 4), (1, 3)}
                       & {(i, j) for i in range(H) for j in range(W)})
    shapes = {s.name: s.shape[1:] for s in bundle.state}
    with OrtBackend(bundle.graph_path("step")) as o_step, OrtBackend(bundle.graph_path("row")) as o_row:
        for i, j in positions:
            feeds = {"row": np.array(i, np.int64), "col": np.array(j, np.int64),
                     "force": np.where(rng.random((B, C)) < 0.5, rng.integers(0, img.levels, (B, C)), -1)
                     .astype(np.int64).reshape((B, C) if C > 1 else (B,)),
                     "noise": rng.random((B, bundle.step_schedule.noise_per_substep), dtype=np.float32)}
            feeds.update({n: rng.standard_normal((B, *shapes[n])).astype(np.float32) for n in t_step.input_names[4:]})
            a, b = o_step.infer(feeds), t_step.infer(feeds)
            same = (a["value"] == b["value"]).reshape(B, -1).all(1)
            agree, total = agree + int(same.sum()), total + B
            dstep = max(dstep, float(np.abs(a["logp"] - b["logp"])[same].max(initial=0.0)))
            for k in t_step.output_names[2:]:
                dstate = max(dstate, float(np.abs(a[k] - b[k])[same].max(initial=0.0)))
            rfeeds = {"row_pixels": rng.integers(0, img.levels, (B, C, W)).astype(np.int64), "row": np.array(i, np.int64)}
            rfeeds.update({n: rng.standard_normal((B, *shapes[n])).astype(np.float32) for n in t_row.input_names[2:]})
            ra, rb = o_row.infer(rfeeds), t_row.infer(rfeeds)
            for k in t_row.output_names:
                dstate = max(dstate, float(np.abs(ra[k] - rb[k]).max()))
        xt = x[:2]
        tf = bundle_loop(o_step, o_row, bundle, make_noise(len(xt), img, seed, bundle.step_schedule), force=xt)
    dtf = float(np.abs(tf.logp - out.logp[: len(xt)]).max())
    check = ExportCheck(dbpd, dlogp, max(dstep, dtf), dstate, agree / total, len(positions))
    misses = []
    if dbpd > BPD_BUDGET or dlogp > LOGP_BUDGET:
        misses.append(f"full graph |delta bits/dim| {dbpd:.2e} (budget {BPD_BUDGET:.0e}), |delta log p| {dlogp:.2e}")
    if dstep > LOGP_BUDGET or dstate > LOGP_BUDGET:
        misses.append(f"step/row graphs |delta log p| {dstep:.2e}, |delta state| {dstate:.2e} > {LOGP_BUDGET:.0e}")
    if dtf > LOGP_BUDGET:
        misses.append(f"teacher-forced ORT step loop vs full graph |delta log p| {dtf:.2e} > {LOGP_BUDGET:.0e}")
    if check.step_value_agreement < 1.0:
        misses.append(f"step graph sampled values agree on only {check.step_value_agreement:.1%} of draws")
    if misses:
        raise ParityError("export validation failed (ONNX Runtime vs PyTorch): " + "; ".join(misses)
                          + ". The graph is not faithful; report this with the checkpoint.")
    return check
