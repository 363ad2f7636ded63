"""Calibrated copies of the shared tiny bundles, built once per session."""
from __future__ import annotations

import numpy as np
import pytest


def images(bundle, n: int, seed: int) -> np.ndarray:
    img = bundle.image
    return np.random.default_rng(seed).integers(0, img.levels, (n, *img.shape)).astype(np.uint8)


def _calibrate(tmp_path_factory, fixture, precision, name, method="minmax"):
    from pixelrt.calibration.calibrate import calibrate_bundle

    model, bundle = fixture
    out = tmp_path_factory.mktemp(name) / "bundle"
    res = calibrate_bundle(bundle.root, out, precision, images(bundle, 24, 7), calib_x=images(bundle, 32, 3),
                           data_name="random", method=method, step_images=8, step_feeds_max=24, teacher=4,
                           samples=4, log=lambda s: None)
    return model, bundle, res


@pytest.fixture(scope="session")
def grey_fp16(tmp_path_factory, grey_bundle):
    """(model, fp32 bundle, CalibrationResult) for the 1x5x6 bundle in FP16."""
    return _calibrate(tmp_path_factory, grey_bundle, "fp16", "grey16")


@pytest.fixture(scope="session")
def rgb_int8(tmp_path_factory, rgb_bundle):
    """(model, fp32 bundle, CalibrationResult) for the 3x4x5 bundle in INT8, method auto."""
    return _calibrate(tmp_path_factory, rgb_bundle, "int8", "rgb8", method="auto")


@pytest.fixture(scope="module")
def digits_trained(tmp_path_factory):
    """(model, fp32 bundle, train x, test x): a small PixelCNN trained 4 epochs on digits (~10 s idle).

    Reduced-precision budgets are stated for trained models: random weights give larger,
    less representative logits."""
    import torch

    from pixelrt.data import load_dataset, split
    from pixelrt.export import export_bundle
    from pixelrt.models import PixelCNN, PixelCNNConfig
    from pixelrt.models.train import TrainConfig, train
    from pixelrt.bundle import ImageSpec

    train_set, test_set = split(load_dataset("digits"), 0.2, 0)
    torch.manual_seed(0)
    model = PixelCNN(PixelCNNConfig(channels=1, levels=17, hidden=32, blocks=2, head_hidden=32))
    root = tmp_path_factory.mktemp("digits")
    train(model, train_set, test_set, TrainConfig(epochs=4, seed=0), root / "ckpt", {}, progress=False,
          log=lambda s: None)
    model.eval()
    bundle = export_bundle(model, ImageSpec(1, 8, 8, 17), test_set.x[:4], root / "bundle", log=lambda s: None).bundle
    return model, bundle, train_set.x, test_set.x
