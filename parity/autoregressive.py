"""Parity of an autoregressive checkpoint against its bundle, in bits/dim and log p.

Compares, on real held-out images and on sampled ones:
  * PyTorch full path vs the ORT full graph, per image (bits/dim) and per sub-pixel (log p);
  * the step graph, teacher-forced, vs the full graph's conditionals (ORT and PyTorch);
  * for sampled images, the summed step log-probs vs the full graph's log-likelihood;
  * samples under shared noise: ORT step vs PyTorch step vs the naive oracle;
  * the causality audit of the PyTorch model.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from pixelrt.models.causality import audit_model
from pixelrt.models.reference import TorchRowRunner, TorchStepRunner, naive_sample
from pixelrt.bundle import Bundle, StepSchedule
from pixelrt.data import Dataset
from pixelrt.parity.budgets import BPD_BUDGET, LOGP_BUDGET, SAMPLE_AGREEMENT_BUDGET
from pixelrt.runtime.backends import open_backend, step_backends
from pixelrt.runtime.conditioning import data_context, sample_context
from pixelrt.runtime.evaluate import check_bundle_images, evaluate
from pixelrt.runtime.parity import ParityReport, agreement_row, count_row, diff_row
from pixelrt.runtime.sampler import bundle_loop, check_context, make_noise

NAIVE_LIMIT = 4096             # sub-pixels x samples above which the O(image)-per-step oracle is skipped


def run_parity(model: torch.nn.Module, bundle: Bundle, x: np.ndarray, samples: int = 8, teacher: int = 8,
               seed: int = 0, progress: bool = False, log=print, context: dict | None = None,
               sample_context: dict | None = None, runtime: str = "ort") -> ParityReport:
    """x: real images (uint8 N, C, H, W). Returns the report; the caller decides to raise.

    context: the conditioning inputs of ``x`` (e.g. {"label": (N,) int64}) for a conditional bundle;
    sample_context: the same for the ``samples`` sampled images.
    runtime: the runtime compared with PyTorch (a key of runtime.backends.RUNTIMES; rows say "ORT" for "ort").
    """
    model = model.eval()
    x = check_bundle_images(bundle, x, "parity data")
    img = bundle.image
    sched = bundle.step_schedule
    context = check_context(context, sched.context, len(x))
    sample_context = check_context(sample_context, sched.context, samples)
    tf_context = {k: v[:teacher] for k, v in context.items()}
    report = ParityReport(f"parity: {bundle.family} {'x'.join(map(str, img.shape))}, {img.levels} levels, "
                          f"{len(x)} held-out images, {samples} samples (seed {seed})")
    with torch.inference_mode():
        t_logp = model.log_prob(torch.from_numpy(x), **{k: torch.from_numpy(v) for k, v in context.items()}).numpy()
    t_ll = t_logp.astype(np.float64).reshape(len(x), -1).sum(1)
    torch_runner = TorchStepRunner(model, image=img)
    torch_row = TorchRowRunner(model, image=img) if sched.row_graph else None
    with open_backend(runtime, bundle.graph_path("full")) as full, step_backends(runtime, bundle) as (step, row):
        log("full graph on held-out images")
        o = evaluate(full, bundle, x, context=context)
        report.rows.append(diff_row("bits/dim per image: PyTorch vs ORT full", img.bits_per_dim(t_ll),
                                    o.bits_per_dim, BPD_BUDGET, "bits/dim"))
        report.rows.append(diff_row("log p per sub-pixel: PyTorch vs ORT full", t_logp, o.logp, LOGP_BUDGET, "nats"))

        log("step graph, teacher-forced")
        xt = x[:teacher]
        noise = make_noise(len(xt), img, seed, sched)
        o_tf = bundle_loop(step, row, bundle, noise, force=xt, context=tf_context, progress=progress,
                           desc="teacher-forced (ORT)")
        t_tf = bundle_loop(torch_runner, torch_row, bundle, noise, force=xt, context=tf_context, progress=progress,
                           desc="teacher-forced (PyTorch)")
        report.rows.append(diff_row("step vs full conditionals (ORT)", o_tf.logp, o.logp[:teacher], LOGP_BUDGET, "nats"))
        report.rows.append(diff_row("step vs full conditionals (PyTorch)", t_tf.logp, t_logp[:teacher], LOGP_BUDGET, "nats"))

        log(f"sampling {samples} images with the step graph")
        noise = make_noise(samples, img, seed, sched)
        o_s = bundle_loop(step, row, bundle, noise, context=sample_context, progress=progress, desc="sampling (ORT)")
        o_sf = evaluate(full, bundle, o_s.images, context=sample_context)
        report.rows.append(diff_row("sampled: summed step log p vs full loglik (ORT)", img.bits_per_dim(o_s.loglik),
                                    o_sf.bits_per_dim, BPD_BUDGET, "bits/dim"))
        report.rows.append(diff_row("sampled: step vs full log p per sub-pixel (ORT)", o_s.logp, o_sf.logp,
                                    LOGP_BUDGET, "nats"))
    t_s = bundle_loop(torch_runner, torch_row, bundle, noise, context=sample_context, progress=progress,
                      desc="sampling (PyTorch)")
    report.rows.append(agreement_row("samples under shared noise: ORT vs PyTorch step", o_s.images, t_s.images,
                                     SAMPLE_AGREEMENT_BUDGET, note="identical sub-pixels"))
    # The oracle samples one channel per uniform, unconditioned (a per-row graph changes nothing for it).
    per_channel = replace(sched, wavefront=None) == StepSchedule(img.channels, row_graph=sched.row_graph)
    if samples * img.dims <= NAIVE_LIMIT and per_channel and hasattr(model, "logits_from_float"):
        log("naive oracle (a full forward pass per sub-pixel)")
        n_img, _ = naive_sample(model, noise, img.levels)
        report.rows.append(agreement_row("samples under shared noise: ORT step vs naive oracle", o_s.images, n_img,
                                         SAMPLE_AGREEMENT_BUDGET, note="identical sub-pixels"))
    log("causality audit (autograd Jacobian)")
    audit = audit_model(model, img.shape, seed=seed)
    report.rows.append(count_row("causality: outputs reading a later sub-pixel", audit.violations, 0, "pairs",
                                 note=f"{audit.checked} outputs audited"))
    report.summary = {
        f"bits/dim of the {len(x)} compared held-out images, PyTorch": f"{img.bits_per_dim(t_ll).mean():.6f}",
        f"bits/dim of the {len(x)} compared held-out images, ORT full": f"{o.mean_bits_per_dim:.6f}",
        f"bits/dim of the {samples} samples, ORT step": f"{img.bits_per_dim(o_s.loglik).mean():.6f}",
        "receptive field coverage of the causal past": f"{audit.coverage:.3f}",
    }
    report.artifacts["samples"] = o_s.images
    if runtime != "ort":  # name the runtime that was compared
        for r in report.rows:
            r.check = r.check.replace("ORT", runtime)
        report.summary = {k.replace("ORT", runtime): v for k, v in report.summary.items()}
    return report


def autoregressive_parity(model: torch.nn.Module, bundle: Bundle, held: Dataset, opts) -> ParityReport:
    """The ``PARITY["autoregressive"]`` comparison on the held-out sample ``held`` (its labels, if the bundle
    takes them; sampled images get labels cycling through the classes)."""
    return run_parity(model, bundle, held.x, samples=opts.samples, teacher=opts.teacher, seed=opts.seed,
                      progress=opts.progress, log=opts.log, runtime=opts.runtime,
                      context=data_context(bundle.context, held), sample_context=sample_context(bundle, opts.samples))
