"""VAE bundles: manifest, dynamic batch, and ORT == PyTorch sample for sample (ELBO, IWAE per image
<= 1e-4 nats in FP32), for a grey discretized-logistic and an RGB categorical model."""
import json

import numpy as np
import pytest
import torch

from pixelrt.errors import BundleError
from pixelrt.parity.latent import compare_graphs, torch_bounds
from pixelrt.models.vae import DecoderGraph, EncoderGraph, TorchGraphRunner
from pixelrt.bundle import load_bundle
from pixelrt.runtime.ort_backend import OrtBackend
from pixelrt.runtime.vae import latent_noise, sample_vae, vae_bounds

BUDGET = 1e-4  # nats per image, FP32


@pytest.fixture(params=["vae_grey_bundle", "vae_rgb_bundle"])
def vae(request):
    return request.getfixturevalue(request.param)


def _images(bundle, n, seed=5):
    img = bundle.image
    return np.random.default_rng(seed).integers(0, img.levels, (n, *img.shape)).astype(np.uint8)


def test_manifest_describes_a_vae_bundle(vae):
    model, bundle = vae
    m = bundle.manifest
    assert bundle.kind == "vae" and m.family == "vae" and set(bundle.graphs) == {"encoder", "decoder"}
    assert m.latent.size == model.config.latent == 3
    assert m.head.kind == {"logistic": "discretized-logistic", "categorical": "categorical"}[model.config.likelihood]
    v = m.validation
    assert max(v["max_delta_elbo"], v["max_delta_iwae"]) <= BUDGET and v["decoder_max_dlogp"] <= BUDGET
    assert v["encoder_max_dmu"] <= BUDGET and v["decoder_max_dbpd"] <= 1e-5
    assert set(m.files) == {"encoder.onnx", "decoder.onnx", "reference.npz"}
    # the bound the manifest records is the one the reference file reproduces through ORT
    ref = bundle.reference()
    with OrtBackend(bundle.graph_path("encoder")) as enc, OrtBackend(bundle.graph_path("decoder")) as dec:
        got = vae_bounds(enc, dec, bundle.image, ref["x"], [ref["eps"].shape[1]], eps=ref["eps"])
    assert np.abs(got.elbo - np.array(m.reference.values["elbo_nats"])).max() <= BUDGET
    assert np.abs(got.iwae[16] - np.array(m.reference.values["iwae_nats"])).max() <= BUDGET


@pytest.mark.parametrize("batch", [1, 7])
def test_graphs_match_pytorch_at_untraced_batch_sizes(vae, batch):
    model, bundle = vae
    with OrtBackend(bundle.graph_path("encoder")) as enc, OrtBackend(bundle.graph_path("decoder")) as dec:
        d = compare_graphs(model, enc, dec, _images(bundle, batch), seed=batch)
    assert d["dmu"].max() <= 1e-5 and d["dlogvar"].max() <= 1e-5
    assert d["dlogp"].max() <= BUDGET and d["dmean"].max() <= 1e-4
    assert d["same_sample"].mean() == 1.0


def test_elbo_and_iwae_per_image_ort_equals_pytorch(vae):
    """Host noise shared: ORT through the torch-free estimators vs VAE.bounds, and the estimators on the
    PyTorch graphs vs VAE.bounds (the host arithmetic alone)."""
    model, bundle = vae
    x = _images(bundle, 9)
    ks = [1, 10, 50]
    eps = latent_noise(len(x), 50, 3, seed=11)
    ref = torch_bounds(model, x, eps, ks)
    # small decoder batches: every chunking path of vae_bounds is crossed
    with OrtBackend(bundle.graph_path("encoder")) as enc, OrtBackend(bundle.graph_path("decoder")) as dec:
        o = vae_bounds(enc, dec, bundle.image, x, ks, seed=11, batch_size=37)
    t = vae_bounds(TorchGraphRunner(EncoderGraph(model)), TorchGraphRunner(DecoderGraph(model)), bundle.image, x, ks,
                   eps=eps)
    assert np.abs(o.elbo - ref["elbo"]).max() <= BUDGET and np.abs(t.elbo - ref["elbo"]).max() <= BUDGET
    for k in ks:
        assert np.abs(o.iwae[k] - ref["iwae"][k]).max() <= BUDGET
        assert np.abs(t.iwae[k] - ref["iwae"][k]).max() <= BUDGET
    # the seeded noise is per image: the ORT run drew exactly ``eps`` (seed 11), whatever the batching
    assert np.array_equal(latent_noise(2, 50, 3, seed=11, start=7), eps[7:9])


def test_samples_are_seeded_and_in_range(vae):
    model, bundle = vae
    with OrtBackend(bundle.graph_path("decoder")) as dec:
        a = sample_vae(dec, bundle.image, 3, 6, seed=4)
        b = sample_vae(dec, bundle.image, 3, 6, seed=4, batch_size=4)
        m = sample_vae(dec, bundle.image, 3, 6, seed=4, use_mean=True)
    t = sample_vae(TorchGraphRunner(DecoderGraph(model)), bundle.image, 3, 6, seed=4)
    assert a.dtype == np.uint8 and a.shape == (6, *bundle.image.shape) and a.max() < bundle.image.levels
    assert np.array_equal(a, b) and np.array_equal(a, t)
    assert m.dtype == np.uint8 and m.max() < bundle.image.levels


def test_load_bundle_checks_every_file_and_the_vae_sections(vae_grey_bundle, tmp_path):
    import shutil

    _, bundle = vae_grey_bundle
    root = tmp_path / "b"
    shutil.copytree(bundle.root, root)
    (root / "encoder.onnx").write_bytes((root / "encoder.onnx").read_bytes()[:-10])
    with pytest.raises(BundleError, match="encoder.onnx: sha256 mismatch"):
        load_bundle(root)
    shutil.rmtree(root)
    for edit, match in [(lambda m: m["graphs"].pop("decoder"), r"graphs\.decoder is missing \(a vae bundle has graphs"),
                        (lambda m: m.update(kind="diffusion"), r"kind must be one of .*got 'diffusion'"),
                        (lambda m: m.pop("latent"), r"manifest\.json: latent is missing"),
                        (lambda m: m["latent"].update(size=0), r"latent\.size must be an integer in 1\.\.65536")]:
        shutil.copytree(bundle.root, root)
        m = json.loads((root / "manifest.json").read_text())
        edit(m)
        (root / "manifest.json").write_text(json.dumps(m))
        with pytest.raises(BundleError, match=match):
            load_bundle(root)
        shutil.rmtree(root)


def test_every_bundle_records_its_kind(grey_bundle):
    """Format 2 writes ``kind`` always (format 1 left it out for autoregressive bundles; those are refused
    with the re-export fix, tests/bundle/test_loader_errors.py)."""
    _, bundle = grey_bundle
    again = load_bundle(bundle.root)
    assert again.manifest.to_json()["kind"] == "autoregressive" == again.kind
