"""Latent-variable parity (parity/latent.py): a VAE and a PixelVAE checkpoint against their bundles, every row
within budget (moved from tests/export/test_vae_export.py and test_pixelvae_export.py)."""
import numpy as np

from pixelrt.parity.latent import run_pixelvae_parity, run_vae_parity

BUDGET = 1e-4  # nats per image, FP32


def _images(bundle, n, seed=5):
    img = bundle.image
    return np.random.default_rng(seed).integers(0, img.levels, (n, *img.shape)).astype(np.uint8)


def test_parity_report_is_within_budget(vae_grey_bundle):
    model, bundle = vae_grey_bundle
    report = run_vae_parity(model, bundle, _images(bundle, 6), k=10, log=lambda s: None)
    assert report.ok, report.table()
    checks = [r.check for r in report.rows]
    assert "ELBO per image: PyTorch vs ORT" in checks and "IWAE-10 per image: PyTorch vs ORT" in checks
    assert all(r.max <= BUDGET for r in report.rows if r.unit == "nats")


def test_parity_report_passes(pixelvae_bundle):
    model, bundle = pixelvae_bundle
    x = np.random.default_rng(2).integers(0, 5, (6, 1, 4, 5)).astype(np.uint8)
    report = run_pixelvae_parity(model, bundle, x, k=10, samples=4, teacher=3, log=lambda s: None)
    assert report.ok, report.table()
    names = [r.check for r in report.rows]
    assert "IWAE-10 per image: PyTorch vs ORT" in names
    assert "p(x|z): sampled: summed step log p vs full loglik (ORT)" in names
    assert "p(x|z): causality: outputs reading a later sub-pixel" in names
