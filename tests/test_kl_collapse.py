"""Posterior collapse is said out loud: a VAE / PixelVAE whose mean KL(q(z|x) || p(z)) is under 0.01 nats per
image gets one warning line on stderr (the `pixelrt` logger) at the end of training and at evaluation,
saying what it means and what to change; a used latent gets none."""
import numpy as np
import pytest
import torch

from pixelrt.bundle import ImageSpec
from pixelrt.data import Dataset
from pixelrt.diagnostics import KL_COLLAPSE_NATS, kl_collapse_message
from pixelrt.models.train import TrainConfig, held_out_kl, train

from tests.conftest import tiny_pixelvae, tiny_vae

X = np.random.default_rng(0).integers(0, 7, (24, 1, 5, 6)).astype(np.uint8)


def _posterior(model, mu: float):
    """Make q(z|x) = N(mu, I) for every x: KL = latent * mu^2 / 2 nats per image (0 for mu = 0)."""
    out = model.encoder.out
    with torch.no_grad():
        out.weight.zero_()
        out.bias.zero_()
        out.bias[: out.bias.numel() // 2] = mu
    return model


def test_the_message_names_the_cause_and_fixes_pixelrt_has():
    vae = kl_collapse_message(0.003, "vae")
    assert vae.startswith("warning: posterior collapse") and "\n" not in vae
    assert "decoder ignores it" in vae and "--set latent=16" in vae and "KL warm-up is general advice" in vae
    assert "--set free_bits=0.5" in kl_collapse_message(0.0, "pixelvae")
    assert kl_collapse_message(KL_COLLAPSE_NATS, "vae") is None and kl_collapse_message(2.5, "pixelvae") is None
    assert kl_collapse_message(float("nan"), "vae") is None


@pytest.mark.parametrize("build", [lambda: tiny_vae(1, 5, 6, 7, "logistic"), lambda: tiny_pixelvae(1, 5, 6, 7)],
                         ids=["vae", "pixelvae"])
def test_training_records_the_kl_and_warns_on_collapse(build, tmp_path, capsys):
    tr, te = Dataset(X[:16], 7, "tiny"), Dataset(X[16:], 7, "tiny")
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.0, weight_decay=0.0)  # lr 0: the posterior stays as set
    collapsed = _posterior(build(), 0.0)
    assert held_out_kl(collapsed, te.x) == pytest.approx(0.0, abs=1e-9)
    result = train(collapsed, tr, te, cfg, tmp_path / "a", {"image": {}}, progress=False, log=lambda s: None)
    assert result.history[0]["test_kl_nats"] == pytest.approx(0.0, abs=1e-9)
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = [line for line in captured.err.splitlines() if "posterior collapse" in line]
    assert len(lines) == 1 and "the held-out split (epoch 1, the checkpoint)" in lines[0]
    used = _posterior(build(), 1.0)  # KL = latent / 2 nats
    result = train(used, tr, te, cfg, tmp_path / "b", {"image": {}}, progress=False, log=lambda s: None)
    assert result.history[0]["test_kl_nats"] == pytest.approx(used.config.latent / 2, rel=1e-5)
    assert "posterior collapse" not in capsys.readouterr().err


@pytest.fixture(scope="module")
def collapsed_bundle(tmp_path_factory):
    from pixelrt.export import export_bundle

    model = _posterior(tiny_vae(1, 5, 6, 7, "logistic"), 0.0).eval()
    out = tmp_path_factory.mktemp("collapsed") / "bundle"
    return export_bundle(model, ImageSpec(1, 5, 6, 7), X[:5], out, log=lambda s: None).bundle


def test_eval_warns_on_a_collapsed_bundle_only(collapsed_bundle, vae_grey_bundle, capsys):
    from pixelrt.runtime.pipelines import pipeline

    scores = pipeline(collapsed_bundle).evaluate(collapsed_bundle, X, iwae=2, source="tiny (test split)")
    assert float(np.mean(scores.kl)) < 1e-6
    err = capsys.readouterr().err
    assert "posterior collapse: KL(q(z|x) || p(z)) on tiny (test split) averages 0.0000 nats" in err
    bundle = vae_grey_bundle[1]
    scores = pipeline(bundle).evaluate(bundle, X, iwae=2)
    assert float(np.mean(scores.kl)) > KL_COLLAPSE_NATS  # the conftest VAE's random encoder uses its latent
    assert "posterior collapse" not in capsys.readouterr().err
