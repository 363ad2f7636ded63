"""Parity of a latent-variable checkpoint (VAE, PixelVAE) against its bundle, sample for sample.

Both kinds share the latent-variable checks, all on host-drawn noise shared by both sides:
  * encoder mu / logvar: PyTorch vs ORT;
  * ELBO and IWAE-K per image (K = 1, 10, ... k): the torch-free estimators on the ORT graphs
    (``runtime/vae.py``, ``runtime/pixelvae.py``) vs the model's own PyTorch bounds (``model.bounds``).

What p(x|z) adds:
  * VAE: decoder log p(x|z) per sub-pixel and decoder samples under shared uniform noise (PyTorch graph
    modules vs ORT graphs), and the same estimators driven by the PyTorch graph modules vs ``VAE.bounds``
    (the host arithmetic itself, without ONNX in the loop);
  * PixelVAE: the features map of prior draws, then the conditioned PixelCNN through the autoregressive
    parity (``parity/autoregressive.py``) given the maps of the images' posterior means (held-out images)
    and of prior draws (samples): rows prefixed ``p(x|z):``.
"""
from __future__ import annotations

import numpy as np
import torch

from pixelrt.bundle import Bundle
from pixelrt.data import Dataset
from pixelrt.models.pixelvae import CONTEXT
from pixelrt.models.vae import DecoderGraph, EncoderGraph, TorchGraphRunner
from pixelrt.parity.autoregressive import run_parity
from pixelrt.parity.budgets import BOUND_BUDGET, DECODER_AGREEMENT_BUDGET, LATENT_BUDGET, LOGP_BUDGET
from pixelrt.runtime.ort_backend import OrtBackend
from pixelrt.runtime.parity import ParityReport, Row, diff_row
from pixelrt.runtime.pixelvae import encode, features, open_pixelvae, pixelvae_backends, pixelvae_bounds
from pixelrt.runtime.vae import iwae_ladder, latent_noise, latent_size, vae_bounds


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


def compare_graphs(model, encoder, decoder, x: np.ndarray, seed: int = 0) -> dict:
    """A VAE's encoder and decoder outputs, one backend each vs the PyTorch graph modules, on the same feeds."""
    rng = np.random.default_rng(seed)
    t_enc, t_dec = TorchGraphRunner(EncoderGraph(model)), TorchGraphRunner(DecoderGraph(model))
    a, b = encoder.infer({"x": x}), t_enc.infer({"x": x})
    feeds = {"z": rng.standard_normal((len(x), model.config.latent), dtype=np.float32), "x": x,
             "noise": rng.random(x.shape, dtype=np.float32)}
    da, db = decoder.infer(feeds), t_dec.infer(feeds)
    return {"dmu": np.abs(a["mu"] - b["mu"]), "dlogvar": np.abs(a["logvar"] - b["logvar"]),
            "dlogp": np.abs(da["logp"] - db["logp"]), "dmean": np.abs(da["mean"] - db["mean"]),
            "same_sample": da["sample"] == db["sample"]}


def _checked_images(img, x: np.ndarray) -> np.ndarray:
    return img.check_images(x, "parity data", "parity data: images are {got} (C x H x W) but the bundle was exported "
                                              "for {want}")


def _bound_rows(report: ParityReport, ref: dict, o, ks: list[int]) -> None:
    """ELBO and IWAE-k per image, PyTorch bounds vs the estimators on ORT; the summary in bits/dim."""
    report.rows.append(diff_row("ELBO per image: PyTorch vs ORT", ref["elbo"], o.elbo, BOUND_BUDGET, "nats"))
    for kk in ks:
        report.rows.append(diff_row(f"IWAE-{kk} per image: PyTorch vs ORT", ref["iwae"][kk], o.iwae[kk],
                                    BOUND_BUDGET, "nats"))
    report.summary = {"ELBO bits/dim, PyTorch / ORT": f"{o.bits_per_dim(ref['elbo']):.6f} / {o.bits_per_dim(o.elbo):.6f}"}
    for kk in ks:
        report.summary[f"IWAE-{kk} bits/dim, PyTorch / ORT"] = \
            f"{o.bits_per_dim(ref['iwae'][kk]):.6f} / {o.bits_per_dim(o.iwae[kk]):.6f}"
    report.artifacts["bounds"] = o


def _encoder_rows(report: ParityReport, mu_t, lv_t, mu, lv) -> None:
    report.rows.append(diff_row("encoder mu: PyTorch vs ORT", mu_t, mu, LATENT_BUDGET, "latent"))
    report.rows.append(diff_row("encoder logvar: PyTorch vs ORT", lv_t, lv, LATENT_BUDGET, "latent"))


def run_vae_parity(model, bundle: Bundle, x: np.ndarray, k: int = 100, seed: int = 0,
                   progress: bool = False, log=print) -> ParityReport:
    model = model.eval()
    img = bundle.image
    Z = latent_size(bundle)
    x = _checked_images(img, x)
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
    _encoder_rows(report, raw["dmu"], raw["dlogvar"], 0 * raw["dmu"], 0 * raw["dlogvar"])  # differences vs 0
    report.rows.append(diff_row("decoder log p(x|z) per sub-pixel: PyTorch vs ORT", raw["dlogp"], 0 * raw["dlogp"],
                                LOGP_BUDGET, "nats"))
    same = raw["same_sample"].reshape(len(raw["same_sample"]), -1).mean(1)
    report.rows.append(Row("decoder samples under shared noise: PyTorch vs ORT", float(same.max()), float(same.mean()),
                           float(np.median(same)), DECODER_AGREEMENT_BUDGET, "fraction", higher_is_better=True,
                           note="identical sub-pixels"))
    _bound_rows(report, ref, o, ks)
    report.rows.append(diff_row("host estimators on PyTorch graphs vs VAE.bounds: ELBO", ref["elbo"], t.elbo,
                                BOUND_BUDGET, "nats"))
    report.rows.append(diff_row(f"host estimators on PyTorch graphs vs VAE.bounds: IWAE-{K}", ref["iwae"][K],
                                t.iwae[K], BOUND_BUDGET, "nats"))
    return report


def run_pixelvae_parity(model, bundle: Bundle, x: np.ndarray, k: int = 100, samples: int = 8,
                        teacher: int = 8, seed: int = 0, progress: bool = False, log=print) -> ParityReport:
    model = model.eval()
    pv = open_pixelvae(bundle)
    img, Z = pv.image, pv.latent
    x = _checked_images(img, x)
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
    _encoder_rows(report, mu_t, lv_t, mu, lv)
    report.rows.append(diff_row("features map of prior z: PyTorch vs ORT", cond_t, cond, LATENT_BUDGET, "map"))
    _bound_rows(report, ref, o, ks)
    log("the conditioned PixelCNN: full graph, step loop and samples given z")
    sub = run_parity(model.pixelcnn, pv.pixelcnn, x, samples=samples, teacher=teacher, seed=seed, progress=progress,
                     log=lambda m: None, context={CONTEXT: model.posterior_maps(x)}, sample_context={CONTEXT: cond_t})
    for row in sub.rows:
        row.check = f"p(x|z): {row.check}"
        report.rows.append(row)
    report.artifacts.update(sub.artifacts)
    return report


def vae_parity(model, bundle: Bundle, held: Dataset, opts) -> ParityReport:
    """The ``PARITY["vae"]`` comparison on the held-out sample ``held``."""
    return run_vae_parity(model, bundle, held.x, k=opts.k, seed=opts.seed, progress=opts.progress, log=opts.log)


def pixelvae_parity(model, bundle: Bundle, held: Dataset, opts) -> ParityReport:
    """The ``PARITY["pixelvae"]`` comparison on the held-out sample ``held``."""
    return run_pixelvae_parity(model, bundle, held.x, k=opts.k, samples=opts.samples, teacher=opts.teacher,
                               seed=opts.seed, progress=opts.progress, log=opts.log)
