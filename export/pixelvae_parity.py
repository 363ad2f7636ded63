"""`pixelrt parity` for a PixelVAE: a checkpoint against its bundle, sample for sample.

Rows, all on host-drawn noise shared by both sides:
  * encoder mu / logvar and the features map: PyTorch vs ORT;
  * ELBO and IWAE-K per image (K = 1, 10, ... k): the torch-free estimators on the ORT graphs vs
    ``PixelVAE.bounds``;
  * the conditioned PixelCNN, through the autoregressive parity (``export/parity.py``) given the maps of
    the images' posterior means (held-out images) and of prior draws (samples): full graph bits/dim,
    teacher-forced step loop vs full, summed sample log p vs full, identical samples, PyTorch vs ORT.
"""
from __future__ import annotations

import numpy as np
import torch

from pixelrt.export.parity import run_parity
from pixelrt.export.pixelvae_export import posterior_maps
from pixelrt.export.vae_export import BOUND_BUDGET, LATENT_BUDGET
from pixelrt.export.vae_parity import torch_bounds
from pixelrt.models.pixelvae import CONTEXT, PixelVAE
from pixelrt.bundle import Bundle
from pixelrt.runtime.parity import ParityReport, diff_row
from pixelrt.runtime.pixelvae import encode, features, open_pixelvae, pixelvae_backends, pixelvae_bounds
from pixelrt.runtime.vae import iwae_ladder, latent_noise


def run_pixelvae_parity(model: PixelVAE, bundle: Bundle, x: np.ndarray, k: int = 100, samples: int = 8,
                        teacher: int = 8, seed: int = 0, progress: bool = False, log=print) -> ParityReport:
    model = model.eval()
    pv = open_pixelvae(bundle)
    img, Z = pv.image, pv.latent
    x = img.check_images(x, "parity data", "parity data: images are {got} (C x H x W) but the bundle was exported "
                                           "for {want}")
    ks = iwae_ladder(k)
    K = ks[-1]
    report = ParityReport(f"parity: pixelvae {'x'.join(map(str, img.shape))}, {img.levels} levels, latent {Z}, "
                          f"{len(x)} held-out images x {K} latent samples (seed {seed}); p(x|z) by a Gated PixelCNN")
    eps = latent_noise(len(x), K, Z, seed)
    log(f"PyTorch bounds ({len(x)} x {K} PixelCNN passes)")
    with torch.inference_mode():
        ref = torch_bounds(model, x, eps, ks, latents_per_call=2048)
        mu_t, lv_t = (v.numpy() for v in model.encoder(torch.from_numpy(x)))
        z_prior = np.random.default_rng(seed).standard_normal((samples, Z), dtype=np.float32)
        cond_t = model.cond(torch.from_numpy(z_prior)).numpy()
    log("ELBO and IWAE through ONNX Runtime")
    with pixelvae_backends(pv) as b:
        mu, lv = encode(b["encoder"], x)
        cond = features(b["features"], z_prior, CONTEXT)
        o = pixelvae_bounds(pv, b, x, ks, eps=eps, progress=progress)
    report.rows.append(diff_row("encoder mu: PyTorch vs ORT", mu_t, mu, LATENT_BUDGET, "latent"))
    report.rows.append(diff_row("encoder logvar: PyTorch vs ORT", lv_t, lv, LATENT_BUDGET, "latent"))
    report.rows.append(diff_row("features map of prior z: PyTorch vs ORT", cond_t, cond, LATENT_BUDGET, "map"))
    report.rows.append(diff_row("ELBO per image: PyTorch vs ORT", ref["elbo"], o.elbo, BOUND_BUDGET, "nats"))
    for kk in ks:
        report.rows.append(diff_row(f"IWAE-{kk} per image: PyTorch vs ORT", ref["iwae"][kk], o.iwae[kk],
                                    BOUND_BUDGET, "nats"))
    log("the conditioned PixelCNN: full graph, step loop and samples given z")
    sub = run_parity(model.pixelcnn, pv.pixelcnn, x, samples=samples, teacher=teacher, seed=seed, progress=progress,
                     log=lambda m: None, context={CONTEXT: posterior_maps(model, x)}, sample_context={CONTEXT: cond_t})
    for row in sub.rows:
        row.check = f"p(x|z): {row.check}"
        report.rows.append(row)
    report.summary = {"ELBO bits/dim, PyTorch / ORT": f"{o.bits_per_dim(ref['elbo']):.6f} / {o.bits_per_dim(o.elbo):.6f}"}
    for kk in ks:
        report.summary[f"IWAE-{kk} bits/dim, PyTorch / ORT"] = \
            f"{o.bits_per_dim(ref['iwae'][kk]):.6f} / {o.bits_per_dim(o.iwae[kk]):.6f}"
    report.artifacts.update(sub.artifacts)
    report.artifacts["bounds"] = o
    return report
