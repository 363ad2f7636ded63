"""`pixelrt parity` for a VAE: a checkpoint against its bundle, sample for sample, in nats and bits/dim.

Rows (all on the same host-drawn Gaussian noise):
  * encoder mu / logvar and decoder log p(x|z) per sub-pixel: PyTorch graph modules vs ORT graphs;
  * decoder samples under shared uniform noise: identical sub-pixels;
  * ELBO and IWAE-K per image: the torch-free estimators (``runtime/vae.py``) on the ORT graphs vs
    the model's own PyTorch bounds (``VAE.bounds``);
  * the same estimators driven by the PyTorch graph modules vs ``VAE.bounds`` (the host arithmetic
    itself, without ONNX in the loop).
"""
from __future__ import annotations

import numpy as np
import torch

from pixelrt.export.vae_export import BOUND_BUDGET, LATENT_BUDGET, LOGP_BUDGET, compare_graphs
from pixelrt.models.vae import VAE, DecoderGraph, EncoderGraph, TorchGraphRunner
from pixelrt.bundle import Bundle
from pixelrt.runtime.ort_backend import OrtBackend
from pixelrt.runtime.parity import ParityReport, Row, diff_row
from pixelrt.runtime.vae import iwae_ladder, latent_noise, latent_size, vae_bounds

SAMPLE_AGREEMENT_BUDGET = 0.99  # no autoregressive cascade: only a float tie at a bin edge can flip a sub-pixel


def torch_bounds(model, x: np.ndarray, eps: np.ndarray, ks: list[int], latents_per_call: int = 4096) -> dict:
    """``model.bounds`` (``VAE`` or ``PixelVAE``) in image chunks (memory), IWAE-k for every k in ``ks``
    from the same log weights."""
    K = eps.shape[1]
    per = max(1, latents_per_call // K)
    elbo, log_w = [], []
    for lo in range(0, len(x), per):
        b = model.bounds(torch.from_numpy(x[lo:lo + per]), torch.from_numpy(eps[lo:lo + per]))
        elbo.append(b["elbo"].numpy())
        log_w.append(b["log_w"].numpy())
    lw = np.concatenate(log_w)
    iwae = {}
    for k in ks:
        m = lw[:, :k].max(1, keepdims=True)
        iwae[k] = (m + np.log(np.exp(lw[:, :k] - m).sum(1, keepdims=True)))[:, 0] - np.log(k)
    return {"elbo": np.concatenate(elbo), "iwae": iwae}


def run_vae_parity(model: VAE, bundle: Bundle, x: np.ndarray, k: int = 100, seed: int = 0,
                   progress: bool = False, log=print) -> ParityReport:
    model = model.eval()
    img = bundle.image
    Z = latent_size(bundle)
    x = img.check_images(x, "parity data", "parity data: images are {got} (C x H x W) but the bundle was exported "
                                           "for {want}")
    ks = iwae_ladder(k)
    K = ks[-1]
    report = ParityReport(f"parity: {bundle.family} {'x'.join(map(str, img.shape))}, {img.levels} levels, latent {Z}, "
                          f"{len(x)} held-out images x {K} latent samples (seed {seed})")
    eps = latent_noise(len(x), K, Z, seed)
    log(f"PyTorch bounds ({len(x)} x {K} decoder passes)")
    with torch.inference_mode():
        ref = torch_bounds(model, x, eps, ks)
    t_enc, t_dec = TorchGraphRunner(EncoderGraph(model)), TorchGraphRunner(DecoderGraph(model))
    with OrtBackend(bundle.graph_path("encoder")) as enc, OrtBackend(bundle.graph_path("decoder")) as dec:
        log("encoder and decoder outputs")
        raw = compare_graphs(model, enc, dec, x, seed)
        log("ELBO and IWAE through ONNX Runtime")
        o = vae_bounds(enc, dec, img, x, ks, eps=eps, progress=progress)
    log("ELBO and IWAE through the same host code on the PyTorch graphs")
    t = vae_bounds(t_enc, t_dec, img, x, ks, eps=eps, progress=progress)
    report.rows.append(diff_row("encoder mu: PyTorch vs ORT", raw["dmu"], 0 * raw["dmu"], LATENT_BUDGET, "latent"))
    report.rows.append(diff_row("encoder logvar: PyTorch vs ORT", raw["dlogvar"], 0 * raw["dlogvar"], LATENT_BUDGET,
                                "latent"))
    report.rows.append(diff_row("decoder log p(x|z) per sub-pixel: PyTorch vs ORT", raw["dlogp"], 0 * raw["dlogp"],
                                LOGP_BUDGET, "nats"))
    same = raw["same_sample"].reshape(len(raw["same_sample"]), -1).mean(1)
    report.rows.append(Row("decoder samples under shared noise: PyTorch vs ORT", float(same.max()), float(same.mean()),
                           float(np.median(same)), SAMPLE_AGREEMENT_BUDGET, "fraction", higher_is_better=True,
                           note="identical sub-pixels"))
    report.rows.append(diff_row("ELBO per image: PyTorch vs ORT", ref["elbo"], o.elbo, BOUND_BUDGET, "nats"))
    for kk in ks:
        report.rows.append(diff_row(f"IWAE-{kk} per image: PyTorch vs ORT", ref["iwae"][kk], o.iwae[kk],
                                    BOUND_BUDGET, "nats"))
    report.rows.append(diff_row("host estimators on PyTorch graphs vs VAE.bounds: ELBO", ref["elbo"], t.elbo,
                                BOUND_BUDGET, "nats"))
    report.rows.append(diff_row(f"host estimators on PyTorch graphs vs VAE.bounds: IWAE-{K}", ref["iwae"][K],
                                t.iwae[K], BOUND_BUDGET, "nats"))
    report.summary = {"ELBO bits/dim, PyTorch / ORT": f"{o.bits_per_dim(ref['elbo']):.6f} / {o.bits_per_dim(o.elbo):.6f}"}
    for kk in ks:
        report.summary[f"IWAE-{kk} bits/dim, PyTorch / ORT"] = \
            f"{o.bits_per_dim(ref['iwae'][kk]):.6f} / {o.bits_per_dim(o.iwae[kk]):.6f}"
    report.artifacts["bounds"] = o
    return report
