"""Parity of a Multi-Scale PixelRNN checkpoint against its bundle (one bundle: stage 1, cond graph, stage 2).

The model's log-likelihood is the bound log p1(c(x)) + log p2(x | c(x)) (docs/pixelrnn.md), so the rows
judge the whole model and each stage's step loop rather than one autoregressive network:
  * the whole model, bundle (three graphs) vs PyTorch, bits/dim per held-out image;
  * stage 1 and stage 2 step loops teacher-forced on held-out images vs PyTorch's log p per sub-pixel;
  * sampled images: the summed step log-probs of both stages vs the full graphs on the same images.
"""
from __future__ import annotations

import numpy as np
import torch

from pixelrt.bundle import Bundle
from pixelrt.data import Dataset
from pixelrt.parity.budgets import BPD_BUDGET, LOGP_BUDGET
from pixelrt.runtime.backends import open_backend
from pixelrt.runtime.multiscale import bias_field, evaluate_multiscale, open_multiscale, sample_multiscale
from pixelrt.runtime.parity import ParityReport, diff_row


def run_multiscale_parity(model, bundle: Bundle, x: np.ndarray, teacher: int = 8, samples: int = 8, seed: int = 0,
                          progress: bool = False, runtime: str = "ort", log=print) -> ParityReport:
    model = model.eval()
    ms = open_multiscale(bundle)
    img = ms.image
    name = "ORT" if runtime == "ort" else runtime
    log("PyTorch: the whole model on held-out images, both stages' log p teacher-forced")
    with torch.inference_mode():
        ll_t = model(torch.from_numpy(x)).double().numpy()
        xt = torch.from_numpy(x[:teacher])
        p1, p2 = (p.numpy() for p in model.log_prob_parts(xt))
    log(f"{name}: full graphs, forced step loops and sampling")
    ev = evaluate_multiscale(ms, x, runtime, source="held-out images")
    tf = sample_multiscale(ms, len(xt), seed, runtime, force=xt.numpy(), progress=progress)
    s = sample_multiscale(ms, samples, seed, runtime, progress=progress)
    with open_backend(runtime, ms.top.graph_path("cond")) as cond, \
            open_backend(runtime, ms.stage1.graph_path("full")) as f1, \
            open_backend(runtime, ms.stage2.graph_path("full")) as f2:
        full = f1.infer({"x": s.coarse})["loglik"].astype(np.float64) + \
            f2.infer({"x": s.images, "bias": bias_field(cond, s.coarse)})["loglik"]
    report = ParityReport(f"multi-scale parity: {'x'.join(map(str, img.shape))}, {img.levels} levels, {len(x)} held-out, "
                          f"{len(xt)} forced, {samples} sampled images (seed {seed})")
    report.rows.append(diff_row(f"full: {name} vs PyTorch bits/dim per image", ev.bits_per_dim, img.bits_per_dim(ll_t),
                                BPD_BUDGET, "bits/dim"))
    report.rows.append(diff_row("stage 1 steps (forced) vs PyTorch log p", tf.logp1, p1, LOGP_BUDGET, "nats"))
    report.rows.append(diff_row("stage 2 steps (forced) vs PyTorch log p", tf.logp2, p2, LOGP_BUDGET, "nats"))
    report.rows.append(diff_row("samples: summed step log p vs full", img.bits_per_dim(s.loglik), img.bits_per_dim(full),
                                BPD_BUDGET, "bits/dim"))
    report.summary = {f"held-out bits/dim ({name}), bound log p1(c) + log p2(x|c)": f"{ev.mean_bits_per_dim:.6f}",
                      "held-out bits/dim (PyTorch)": f"{img.bits_per_dim(ll_t).mean():.6f}"}
    report.artifacts["samples"] = s.images
    return report


def multiscale_parity(model, bundle: Bundle, held: Dataset, opts) -> ParityReport:
    """The ``PARITY["multiscale"]`` comparison on the held-out sample ``held``."""
    return run_multiscale_parity(model, bundle, held.x, teacher=opts.teacher, samples=opts.samples, seed=opts.seed,
                                 progress=opts.progress, runtime=opts.runtime, log=opts.log)
