"""The kind table (runtime/pipelines/) and the Python API on it: for every bundle kind, ``pixelrt.sample`` /
``pixelrt.evaluate`` give exactly what the hand-wired runtime calls give for the same seed, every kind's
reference check passes on a fresh bundle and fails on one whose reference numbers were edited, and the
options a kind lacks are refused naming the kinds that have them."""
from __future__ import annotations

import numpy as np
import pytest

import pixelrt
from pixelrt.bundle import KINDS, load_bundle
from pixelrt.errors import BundleError, ParityError, PixelrtError
from pixelrt.runtime.backends import open_backend, step_backends
from pixelrt.runtime.pipelines import PIPELINES, Samples, Scores, pipeline
from tests.runtime.bundle_edits import copy_bundle, read_manifest, rehash, write_manifest_json


def _images(bundle, n, seed=3):
    img = bundle.image
    return np.random.default_rng(seed).integers(0, img.levels, (n, *img.shape)).astype(np.uint8)


def test_one_pipeline_per_bundle_kind(grey_bundle):
    assert set(PIPELINES) == set(KINDS)
    assert all(p.kind == k for k, p in PIPELINES.items())
    assert pipeline(grey_bundle[1]) is PIPELINES["autoregressive"] and pipeline("vae") is PIPELINES["vae"]
    with pytest.raises(BundleError, match="known kinds: autoregressive, vae, multiscale, pixelvae"):
        pipeline("gan")


def test_a_pipeline_refuses_another_kinds_bundle(grey_bundle):
    with pytest.raises(BundleError, match="autoregressive bundle"):
        PIPELINES["vae"].sample(grey_bundle[1], 1)


# ------------------------------------------------------------------ sampling: same seed, same images


def test_autoregressive_sample_matches_the_step_loop(grey_bundle):
    from pixelrt.runtime.sampler import bundle_loop, make_noise

    bundle = grey_bundle[1]
    with step_backends("ort", bundle) as (step, row):
        old = bundle_loop(step, row, bundle, make_noise(5, bundle.image, 7, bundle.step_schedule), batch_size=2)
    new = pixelrt.sample(bundle, 5, seed=7, batch_size=2)
    assert isinstance(new, Samples) and new.images.dtype == np.uint8 and new.images.shape == (5, 1, 5, 6)
    np.testing.assert_array_equal(new.images, old.images)
    np.testing.assert_array_equal(new.logp, old.logp)
    np.testing.assert_array_equal(new.loglik, old.loglik)
    np.testing.assert_array_equal(new.bits_per_dim, bundle.image.bits_per_dim(old.loglik))
    assert set(new.arrays()) == {"images", "logp"} and "sampled 5 images with ort" in new.summary()
    by_path = pixelrt.sample(str(bundle.root), 5, seed=7)  # a path is loaded; batching changes nothing
    np.testing.assert_array_equal(by_path.images, old.images)
    assert not np.array_equal(pixelrt.sample(bundle, 5, seed=8).images, old.images)


def test_vae_sample_matches_sample_vae(vae_grey_bundle):
    from pixelrt.runtime.vae import latent_size, sample_vae

    bundle = vae_grey_bundle[1]
    for mean in (False, True):
        with open_backend("ort", bundle.graph_path("decoder")) as dec:
            old = sample_vae(dec, bundle.image, latent_size(bundle), 6, 4, use_mean=mean, batch_size=64)
        new = pixelrt.sample(bundle, 6, seed=4, mean=mean)
        np.testing.assert_array_equal(new.images, old)
        assert new.logp is None and new.loglik is None and set(new.arrays()) == {"images"}
        assert ("decoder means" if mean else "samples of p(x|z)") in new.summary()


def test_multiscale_sample_matches_sample_multiscale(multiscale_bundle):
    from pixelrt.runtime.multiscale import open_multiscale, sample_multiscale

    bundle = multiscale_bundle[1]
    old = sample_multiscale(open_multiscale(bundle), 3, 5, "ort", 64)
    new = pixelrt.sample(bundle, 3, seed=5)
    np.testing.assert_array_equal(new.images, old.images)
    np.testing.assert_array_equal(new.coarse, old.coarse)
    np.testing.assert_array_equal(new.logp1, old.logp1)
    np.testing.assert_array_equal(new.logp2, old.logp2)
    np.testing.assert_array_equal(new.loglik, old.loglik)
    assert set(new.arrays()) == {"images", "coarse", "logp1", "logp2"}


def test_pixelvae_sample_matches_sample_pixelvae(pixelvae_bundle):
    from pixelrt.runtime.pixelvae import open_pixelvae, pixelvae_backends, sample_pixelvae

    bundle = pixelvae_bundle[1]
    pv = open_pixelvae(bundle)
    with pixelvae_backends(pv, "ort", step=True) as b:
        old = sample_pixelvae(pv, b, 4, 2, 64)
    new = pixelrt.sample(bundle, 4, seed=2)
    np.testing.assert_array_equal(new.images, old.images)
    np.testing.assert_array_equal(new.z, old.z)
    np.testing.assert_array_equal(new.logp, old.logp)
    np.testing.assert_array_equal(new.loglik, old.log_px)
    assert set(new.arrays()) == {"images", "logp", "z"}


# ------------------------------------------------------------------ scoring: the same numbers


def test_autoregressive_evaluate_matches_the_full_graph(grey_bundle):
    from pixelrt.runtime.evaluate import evaluate

    bundle = grey_bundle[1]
    x = _images(bundle, 7)
    with open_backend("ort", bundle.graph_path("full")) as full:
        old = evaluate(full, bundle, x, batch_size=3)
        legacy = pixelrt.evaluate(full, bundle, x, 3)  # the older form: an open backend first
        legacy_kw = pixelrt.evaluate(full, bundle, x, batch_size=3, source="mine")
    new = pixelrt.evaluate(bundle, x, batch_size=3)
    assert isinstance(new, Scores) and len(new) == 7
    np.testing.assert_array_equal(new.nats, old.loglik)
    np.testing.assert_array_equal(new.bits_per_dim, old.bits_per_dim)
    np.testing.assert_array_equal(new.logp, old.logp)
    for res in (legacy, legacy_kw):
        np.testing.assert_array_equal(res.loglik, old.loglik)
    assert new.rows() == [f"images: 7 images, {old.mean_bits_per_dim:.4f} bits/dim (ort)"]
    assert new.summary()["bits_per_dim"] == pytest.approx(old.mean_bits_per_dim)
    with pytest.raises(PixelrtError, match="iwae= applies to VAE or PixelVAE bundles.*log-likelihood is exact"):
        pixelrt.evaluate(bundle, x, iwae=10)


def test_vae_evaluate_matches_vae_bounds(vae_grey_bundle):
    from pixelrt.runtime.vae import vae_bounds

    bundle = vae_grey_bundle[1]
    x = _images(bundle, 4)
    with open_backend("ort", bundle.graph_path("encoder")) as enc, \
            open_backend("ort", bundle.graph_path("decoder")) as dec:
        old = vae_bounds(enc, dec, bundle.image, x, [1, 10, 30], seed=9, batch_size=256)
    new = pixelrt.evaluate(bundle, x, iwae=30, seed=9)
    np.testing.assert_array_equal(new.elbo, old.elbo)
    np.testing.assert_array_equal(new.nats, old.elbo)
    np.testing.assert_array_equal(new.kl, old.kl)
    assert sorted(new.iwae) == [1, 10, 30]
    for k in (1, 10, 30):
        np.testing.assert_array_equal(new.iwae[k], old.iwae[k])
    rows = new.rows()
    assert rows[1].startswith("  ELBO ") and [r.split()[0] for r in rows[2:]] == ["IWAE-1", "IWAE-10", "IWAE-30"]
    assert new.summary()["iwae_30_bits_per_dim"] == pytest.approx(old.summary()["iwae_30_bits_per_dim"])
    with pytest.raises(PixelrtError, match="1..100000"):
        pixelrt.evaluate(bundle, x, iwae=0)


def test_multiscale_evaluate_matches_evaluate_multiscale(multiscale_bundle):
    from pixelrt.runtime.multiscale import evaluate_multiscale, open_multiscale

    bundle = multiscale_bundle[1]
    x = _images(bundle, 3)
    old = evaluate_multiscale(open_multiscale(bundle), x, "ort", 256)
    new = pixelrt.evaluate(bundle, x)
    np.testing.assert_array_equal(new.nats, old.loglik)
    np.testing.assert_array_equal(new.bits_per_dim, old.bits_per_dim)
    np.testing.assert_array_equal(new.loglik1, old.loglik1)
    np.testing.assert_array_equal(new.loglik2, old.loglik2)
    assert "stage 1" in new.rows()[0] and "loglik1_bits_per_dim" in new.summary()
    with pytest.raises(PixelrtError, match="iwae= applies to VAE or PixelVAE bundles"):
        pixelrt.evaluate(bundle, x, iwae=10)


def test_pixelvae_evaluate_matches_pixelvae_bounds(pixelvae_bundle):
    from pixelrt.runtime.pixelvae import open_pixelvae, pixelvae_backends, pixelvae_bounds

    bundle = pixelvae_bundle[1]
    x = _images(bundle, 3)
    pv = open_pixelvae(bundle)
    with pixelvae_backends(pv, "ort") as b:
        old = pixelvae_bounds(pv, b, x, [1, 10], seed=1, batch_size=256)
    new = pixelrt.evaluate(bundle, x, iwae=10, seed=1)
    np.testing.assert_array_equal(new.elbo, old.elbo)
    for k in (1, 10):
        np.testing.assert_array_equal(new.iwae[k], old.iwae[k])
    assert "PixelVAE" in new.rows()[0]


# ------------------------------------------------------------------ interpolation


def test_interpolate_matches_the_runtime_and_is_refused_elsewhere(vae_grey_bundle, pixelvae_bundle, grey_bundle,
                                                                  multiscale_bundle):
    from pixelrt.runtime.pixelvae import interpolate_pixelvae, open_pixelvae, pixelvae_backends
    from pixelrt.runtime.vae import interpolate

    vae = vae_grey_bundle[1]
    pair = _images(vae, 2)
    with open_backend("ort", vae.graph_path("encoder")) as enc, open_backend("ort", vae.graph_path("decoder")) as dec:
        old = interpolate(enc, dec, vae.image, pair, 5)
    new = pixelrt.interpolate(vae, pair, 5)
    np.testing.assert_array_equal(new.images, old)
    assert new.images.shape == (7, *vae.image.shape) and "decoder means" in new.description

    pvb = pixelvae_bundle[1]
    pair = _images(pvb, 2)
    pv = open_pixelvae(pvb)
    with pixelvae_backends(pv, "ort", step=True) as b:
        old = interpolate_pixelvae(pv, b, pair, 4, seed=6)
    np.testing.assert_array_equal(pixelrt.interpolate(pvb, pair, 4, seed=6).images, old)

    for b in (grey_bundle[1], multiscale_bundle[1]):
        with pytest.raises(PixelrtError, match=f"interpolate needs a VAE or PixelVAE bundle; {b.root} is a "):
            pixelrt.interpolate(b, _images(b, 2), 4)


def test_options_a_kind_lacks_are_refused(grey_bundle, multiscale_bundle, pixelvae_bundle):
    for b in (grey_bundle[1], multiscale_bundle[1]):
        with pytest.raises(PixelrtError, match="mean=True applies to VAE bundles"):
            pixelrt.sample(b, 1, mean=True)
    with pytest.raises(PixelrtError, match="no closed-form mean; drop mean=True"):
        pixelrt.sample(pixelvae_bundle[1], 1, mean=True)
    p = pipeline(grey_bundle[1])
    assert "--mean applies to VAE bundles" in str(p.refusal(grey_bundle[1], "mean", "--mean"))
    assert PIPELINES["vae"].supports >= {"mean", "iwae", "interpolate"} and not PIPELINES["autoregressive"].supports
    with pytest.raises(PixelrtError, match="not label-conditional"):
        pixelrt.sample(grey_bundle[1], 2, label=1)
    with pytest.raises(PixelrtError, match="takes no label"):
        pixelrt.evaluate(pixelvae_bundle[1], _images(pixelvae_bundle[1], 2), context={"label": np.zeros(2, np.int64)})
    for bad in (dict(n=0), dict(n=2, batch_size=0), dict(n=1.5)):
        with pytest.raises(PixelrtError, match="must be"):
            pixelrt.sample(grey_bundle[1], **bad)


# ------------------------------------------------------------------ reference check, every kind


KIND_FIXTURES = ["grey_bundle", "vae_grey_bundle", "multiscale_bundle", "pixelvae_bundle"]
REFERENCE_ARRAY = {"autoregressive": "loglik", "multiscale": "loglik", "vae": "elbo", "pixelvae": "iwae"}
MANIFEST_VALUE = {"autoregressive": "loglik_nats", "multiscale": "loglik_nats", "vae": "iwae_nats",
                  "pixelvae": "elbo_nats"}


@pytest.mark.parametrize("fixture", KIND_FIXTURES)
def test_reference_check_passes_on_a_fresh_bundle(fixture, request):
    bundle = request.getfixturevalue(fixture)[1]
    res = pixelrt.check_reference(bundle)
    assert 0 <= res.drift <= res.budget == 1e-5
    assert "vs export time: " in res.line() and f"{res.drift:.1e}" in res.line()
    assert set(res.quantities) == ({"elbo", "iwae"} if bundle.kind in ("vae", "pixelvae") else {"loglik"})


@pytest.mark.parametrize("fixture", KIND_FIXTURES)
def test_reference_check_fails_on_edited_reference_numbers(fixture, request, tmp_path):
    bundle = request.getfixturevalue(fixture)[1]
    # reference.npz edited, its checksum recomputed (a forger's copy): the graphs no longer give its numbers
    root = copy_bundle(bundle, tmp_path / "npz")
    with np.load(root / "reference.npz") as z:
        arrays = {k: z[k] for k in z.files}
    key = REFERENCE_ARRAY[bundle.kind]
    arrays[key] = arrays[key].copy()
    arrays[key][0] += 0.5  # nats
    np.savez(root / "reference.npz", **arrays)
    rehash(root, "reference.npz")
    with pytest.raises(ParityError, match="reference batch"):
        pixelrt.check_reference(root)
    # the manifest's per-image record edited instead (reference.npz untouched)
    root = copy_bundle(bundle, tmp_path / "manifest")
    m = read_manifest(root)
    values = m["reference"][MANIFEST_VALUE[bundle.kind]]
    values[-1] -= 0.5
    write_manifest_json(root, m)
    edited = load_bundle(root)
    with pytest.raises(ParityError, match="reference batch"):
        pipeline(edited).check_reference(edited, "ort")


# ------------------------------------------------------------------ a label-conditional bundle, through the CLI


@pytest.fixture(scope="module")
def gated_label_bundle(tmp_path_factory):
    """A label-conditional Gated PixelCNN bundle (3 classes, 1x4x4, 4 levels), trained and exported by the CLI."""
    from pixelrt.cli import main

    d = tmp_path_factory.mktemp("pipelines-gated")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 24)
    x = rng.integers(0, 4, (24, 1, 4, 4)).astype(np.uint8)
    np.savez(d / "tiny.npz", x=x, labels=y, levels=np.array(4))
    assert main(["train", "--model", "gated", "--condition", "label", "--data", str(d / "tiny.npz"), "-o",
                 str(d / "ckpt"), "--epochs", "1", "--set", "hidden=4", "--set", "layers=2", "--set", "head_hidden=4",
                 "--set", "input_kernel=3", "--no-progress"]) == 0
    assert main(["export", str(d / "ckpt"), "-o", str(d / "bundle"), "--reference", "3"]) == 0
    return load_bundle(d / "bundle")


def test_labels_reach_the_step_loop_and_the_full_graph(gated_label_bundle):
    from pixelrt.runtime.conditioning import parse_labels
    from pixelrt.runtime.evaluate import evaluate
    from pixelrt.runtime.sampler import bundle_loop, make_noise

    bundle = gated_label_bundle
    labels = parse_labels("0-2", 6)
    with step_backends("ort", bundle) as (step, row):
        old = bundle_loop(step, row, bundle, make_noise(6, bundle.image, 1, bundle.step_schedule),
                          context={"label": labels})
    for label in ("0-2", labels, list(labels)):
        new = pixelrt.sample(bundle, 6, seed=1, label=label)
        np.testing.assert_array_equal(new.images, old.images)
        np.testing.assert_array_equal(new.label, labels)
    np.testing.assert_array_equal(pixelrt.sample(bundle, 2, label=2).label, [2, 2])
    with pytest.raises(PixelrtError, match="label-conditional|needs label"):
        pixelrt.sample(bundle, 2)
    with pytest.raises(PixelrtError, match="0..2"):
        pixelrt.sample(bundle, 2, label=3)
    with pytest.raises(PixelrtError, match="one per image"):
        pixelrt.sample(bundle, 3, label=[0, 1])

    x = old.images
    with open_backend("ort", bundle.graph_path("full")) as full:
        want = evaluate(full, bundle, x, context={"label": labels})
    np.testing.assert_array_equal(pixelrt.evaluate(bundle, x, label=labels).nats, want.loglik)
    np.testing.assert_array_equal(pixelrt.evaluate(bundle, x, context={"label": labels}).nats, want.loglik)
    assert pixelrt.check_reference(bundle).drift <= 1e-5


def test_the_root_package_stays_lazy_and_keeps_its_names():
    import subprocess
    import sys

    import pixelrt.bundle
    import pixelrt.runtime.sampler

    code = "import sys, pixelrt; print(sorted(m for m in sys.modules if m in ('onnxruntime', 'torch') or " \
           "m.startswith('pixelrt.runtime')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"  # import pixelrt loads neither the runtime nor ONNX Runtime
    assert pixelrt.load_bundle is pixelrt.bundle.load_bundle and pixelrt.step_loop is pixelrt.runtime.sampler.step_loop
    assert pixelrt.PIPELINES is PIPELINES and pixelrt.pipeline is pipeline
    assert callable(pixelrt.make_noise) and callable(pixelrt.save_grid) and callable(pixelrt.OrtBackend)
    for name in ("load", "sample", "evaluate", "interpolate", "check_reference"):
        assert name in pixelrt.__all__ and getattr(pixelrt, name).__doc__
