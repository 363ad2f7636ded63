"""PixelVAE bundles: layout and checksums, ORT vs PyTorch bounds, sampling and its log-probs, bad inputs."""
import json
import shutil

import numpy as np
import pytest
import torch

from pixelrt.errors import BundleError, DataError, PixelrtError
from pixelrt.parity.latent import torch_bounds
from pixelrt.models.pixelvae import CONTEXT
from pixelrt.bundle import load_bundle
from pixelrt.runtime.pixelvae import (autoregressive_log_px, decode_latents, features, interpolate_pixelvae,
                                      open_pixelvae, pixelvae_backends, pixelvae_bounds, sample_pixelvae)
from pixelrt.runtime.sampler import make_noise
from pixelrt.runtime.vae import latent_noise

BOUND_BUDGET, LOGP_BUDGET = 1e-4, 1e-4


def test_manifest_and_layout(pixelvae_bundle):
    _, bundle = pixelvae_bundle
    m = bundle.manifest
    assert bundle.kind == "pixelvae" and m.family == "pixelvae" and set(bundle.graphs) == {"encoder", "features"}
    assert m.latent.size == 2 and (m.parts["pixelcnn"].dir, m.parts["pixelcnn"].context) == ("pixelcnn", CONTEXT)
    assert {"pixelcnn/full.onnx", "pixelcnn/step.onnx", "pixelcnn/row.onnx", "pixelcnn/manifest.json"} <= set(m.files)
    pv = open_pixelvae(bundle)
    assert pv.pixelcnn.context == (CONTEXT,) and pv.pixelcnn.family == "gated"
    v = m.validation
    assert max(v["max_delta_elbo"], v["max_delta_iwae"], v["pixelcnn.step_vs_full_max_dlogp"]) <= BOUND_BUDGET
    assert v["pixelcnn.step_vs_full_max_dbpd"] <= 1e-5


def test_a_changed_decoder_file_is_refused(pixelvae_bundle, tmp_path):
    root = tmp_path / "b"
    shutil.copytree(pixelvae_bundle[1].root, root)
    with open(root / "pixelcnn" / "step.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="pixelcnn/step.onnx"):
        load_bundle(root)


def test_bounds_match_pytorch_at_untraced_batch_sizes(pixelvae_bundle):
    model, bundle = pixelvae_bundle
    pv = open_pixelvae(bundle)
    x = np.random.default_rng(5).integers(0, 5, (7, 1, 4, 5)).astype(np.uint8)
    eps = latent_noise(7, 20, 2, seed=3)
    ref = torch_bounds(model, x, eps, [1, 20])
    with pixelvae_backends(pv) as b:
        got = pixelvae_bounds(pv, b, x, [1, 20], eps=eps, batch_size=13)  # 13 latents per call: ragged chunks
        again = pixelvae_bounds(pv, b, bundle.reference()["x"], [16], eps=bundle.reference()["eps"])
    assert np.abs(got.elbo - ref["elbo"]).max() <= BOUND_BUDGET
    for k in (1, 20):
        assert np.abs(got.iwae[k] - ref["iwae"][k]).max() <= BOUND_BUDGET
    assert np.abs(again.iwae[16] - bundle.reference()["iwae"]).max() <= BOUND_BUDGET
    assert (got.iwae[20] >= got.recon - got.kl - 5.0).all()  # sanity: a bound near the ELBO, not garbage


def test_summed_sample_logp_equals_the_full_graph_given_z(pixelvae_bundle):
    model, bundle = pixelvae_bundle
    pv = open_pixelvae(bundle)
    with pixelvae_backends(pv, step=True) as b:
        s = sample_pixelvae(pv, b, 6, seed=4, batch_size=4)
        again = sample_pixelvae(pv, b, 6, seed=4, batch_size=6)
    assert (s.images == again.images).all()  # batching does not change a seed's images
    with pixelvae_backends(pv) as b:
        full = autoregressive_log_px(b["features"], b["full"], CONTEXT)(s.z, s.images)
        cond = features(b["features"], s.z, CONTEXT)
    assert np.abs(s.log_px - full).max() <= LOGP_BUDGET
    with torch.inference_mode():  # and PyTorch's log p(x|z) of the same images
        t = model.pixelcnn(torch.from_numpy(s.images), cond=model.cond(torch.from_numpy(s.z))).double().numpy()
    assert np.abs(s.log_px - t).max() <= LOGP_BUDGET
    assert cond.shape == (6, 4, 4, 5)


def test_interpolation_shares_the_step_noise(pixelvae_bundle):
    _, bundle = pixelvae_bundle
    pv = open_pixelvae(bundle)
    pair = bundle.reference()["x"][:2]
    with pixelvae_backends(pv, step=True) as b:
        row = interpolate_pixelvae(pv, b, pair, 4, seed=1)
        same = decode_latents(pv, b, np.repeat(np.zeros((1, 2), np.float32), 2, 0),
                              np.repeat(make_noise(1, pv.image, 1, pv.pixelcnn.step_schedule), 2, 0))
        with pytest.raises(PixelrtError, match="--steps"):
            interpolate_pixelvae(pv, b, pair, 1)
        with pytest.raises(DataError, match="exactly 2"):
            interpolate_pixelvae(pv, b, bundle.reference()["x"][:3], 4)
    assert row.shape == (6, 1, 4, 5) and (row[0] == pair[0]).all() and (row[-1] == pair[1]).all()
    assert (same.images[0] == same.images[1]).all()  # same z, same noise: the same image


def test_bad_inputs_name_the_problem(pixelvae_bundle, vae_grey_bundle, tmp_path):
    _, bundle = pixelvae_bundle
    pv = open_pixelvae(bundle)
    with pytest.raises(BundleError, match="not a PixelVAE"):
        open_pixelvae(vae_grey_bundle[1])
    with pixelvae_backends(pv) as b:
        with pytest.raises(DataError, match="exported for 1x4x5"):
            pixelvae_bounds(pv, b, np.zeros((2, 1, 5, 5), np.uint8), [1])
        with pytest.raises(DataError):
            pixelvae_bounds(pv, b, np.full((2, 1, 4, 5), 9, np.uint8), [1])  # beyond the 5 levels
        with pytest.raises(PixelrtError, match="NaN"):
            features(b["features"], np.full((1, 2), np.nan, np.float32), CONTEXT)
    root = tmp_path / "b"
    shutil.copytree(bundle.root, root)
    doc = json.loads((root / "manifest.json").read_text())
    doc["parts"]["pixelcnn"]["context"] = "label"
    (root / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=r"parts\.pixelcnn\.context must name the features graph's output 'cond'"):
        open_pixelvae(root)


def test_tensorrt_parser_check_passes_on_every_part(pixelvae_bundle):
    """doctor on encoder / features and on the conditioned PixelCNN's full, step and row graphs."""
    from tests.runtime.device_emulation import assert_tensorrt_parser_check_passes

    pv = open_pixelvae(pixelvae_bundle[1])
    for part in (pv.top, pv.pixelcnn):
        assert_tensorrt_parser_check_passes(part)


def test_doctor_and_build_engine_cover_the_decoder_sub_bundle(pixelvae_bundle, capsys):
    """The GPU commands see every part of a composite bundle: pixelcnn/'s graphs are checked and buildable."""
    from pixelrt.cli import main

    root = str(pixelvae_bundle[1].root)
    assert main(["doctor", root]) == 0
    out = capsys.readouterr().out
    assert "all 5 graphs pass" in out and "pixelcnn/row.onnx" in out and "server, pixelcnn/" in out
    assert main(["build-engine", root, "--graphs", "pixelcnn/nope"]) == 2
    assert "it has: encoder, features, pixelcnn/full, pixelcnn/step, pixelcnn/row" in capsys.readouterr().err
    assert main(["build-engine", root, "--graphs", "pixelcnn/step"]) == 2  # valid graph; no TensorRT here
    captured = capsys.readouterr()
    assert "engines to build: pixelcnn/step" in captured.out and "TensorRT" in captured.err


def test_rgb_pixelvae_exports_and_matches_pytorch(tmp_path):
    """R->G->B: the conditioned PixelCNN's channel groups given the map, through export, bounds and sampling."""
    from pixelrt.export import export_bundle
    from pixelrt.bundle import ImageSpec
    from tests.conftest import tiny_pixelvae

    model = tiny_pixelvae(3, 4, 4, 4)
    x = np.random.default_rng(3).integers(0, 4, (3, 3, 4, 4)).astype(np.uint8)
    result = export_bundle(model, ImageSpec(3, 4, 4, 4), x, tmp_path / "b", log=lambda s: None)
    bundle, check = result.bundle, result.report
    assert check.row("pixelcnn.step_vs_full_max_dlogp").max <= LOGP_BUDGET
    assert check.row("max_delta_iwae").max <= BOUND_BUDGET
    pv = open_pixelvae(bundle)
    eps = latent_noise(3, 8, 2, seed=1)
    ref = torch_bounds(model, x, eps, [8])
    with pixelvae_backends(pv) as b:
        got = pixelvae_bounds(pv, b, x, [8], eps=eps)
    assert np.abs(got.iwae[8] - ref["iwae"][8]).max() <= BOUND_BUDGET
    with pixelvae_backends(pv, step=True) as b:
        s = sample_pixelvae(pv, b, 4, seed=2)
    with torch.inference_mode():
        t = model.pixelcnn(torch.from_numpy(s.images), cond=model.cond(torch.from_numpy(s.z))).double().numpy()
    assert s.images.shape == (4, 3, 4, 4) and np.abs(s.log_px - t).max() <= LOGP_BUDGET
