"""Shared fixtures: tiny models and bundles, built once per session (export takes seconds)."""
from __future__ import annotations

import os

# Tiny models run fastest on one thread per library; on a 2-core machine, torch's OpenMP pool and
# ORT's own threads otherwise oversubscribe the cores (measured: models + export tests 42 s with
# one thread, several minutes without under load). Users' runs keep each library's default.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from pixelrt.bundle import ImageSpec

try:
    import onnxruntime as _ort

    HAS_CUDA = "CUDAExecutionProvider" in _ort.get_available_providers()
except ImportError:  # runtime extra missing
    HAS_CUDA = False


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA device and onnxruntime-gpu; none on this machine")
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip)


def tiny_pixelcnn(channels: int, levels: int, seed: int = 0):
    from pixelrt.models import PixelCNN, PixelCNNConfig

    torch.manual_seed(seed)
    cfg = PixelCNNConfig(channels=channels, levels=levels, hidden=6 * channels, blocks=2, head_hidden=4 * channels)
    return PixelCNN(cfg).eval()


def _bundle(tmp_path_factory, channels, height, width, levels, name, seed: int = 0):
    from pixelrt.export import export_bundle

    model = tiny_pixelcnn(channels, levels, seed)
    image = ImageSpec(channels, height, width, levels)
    x = np.random.default_rng(1).integers(0, levels, (5, channels, height, width)).astype(np.uint8)
    out = tmp_path_factory.mktemp(name) / "bundle"
    result = export_bundle(model, image, x, out, log=lambda s: None)
    return model, result.bundle


@pytest.fixture(scope="session")
def grey_bundle(tmp_path_factory):
    """(model, bundle): 1x5x6 images, 7 levels, 2 residual blocks."""
    return _bundle(tmp_path_factory, 1, 5, 6, 7, "grey")


@pytest.fixture(scope="session")
def grey_bundle_other_weights(tmp_path_factory):
    """(model, bundle): grey_bundle's shape, levels and states, with other weights (a swapped-graph forgery)."""
    return _bundle(tmp_path_factory, 1, 5, 6, 7, "grey-other", seed=1)


@pytest.fixture(scope="session")
def multiscale_bundle(tmp_path_factory):
    """(model, bundle, check, x): Multi-Scale PixelRNN, 1x8x8 images, 16 levels, Row LSTM stages."""
    from pixelrt.export import export_bundle
    from pixelrt.models.multiscale import MultiScale, MultiScaleConfig

    torch.manual_seed(0)
    model = MultiScale(MultiScaleConfig(channels=1, levels=16, hidden=4, state=2, layers=2, input_kernel=3,
                                        row_kernel=3, head_hidden=4, up_channels=4)).eval()
    x = np.random.default_rng(0).integers(0, 16, (3, 1, 8, 8)).astype(np.uint8)
    out = tmp_path_factory.mktemp("ms") / "bundle"
    result = export_bundle(model, ImageSpec(1, 8, 8, 16), x, out, log=lambda m: None)
    bundle, check = result.bundle, result.report
    return model, bundle, check, x


@pytest.fixture(scope="session")
def rgb_bundle(tmp_path_factory):
    """(model, bundle): 3x4x5 images, 5 levels, R->G->B channel groups."""
    return _bundle(tmp_path_factory, 3, 4, 5, 5, "rgb")


def tiny_vae(channels: int, height: int, width: int, levels: int, likelihood: str, seed: int = 0):
    from pixelrt.models import VAE, VAEConfig

    torch.manual_seed(seed)
    cfg = VAEConfig(channels=channels, levels=levels, height=height, width=width, latent=3, hidden=4, downsample=1,
                    dense=16, likelihood=likelihood)
    return VAE(cfg).eval()


def _vae_bundle(tmp_path_factory, channels, height, width, levels, likelihood, name):
    from pixelrt.export import export_bundle

    model = tiny_vae(channels, height, width, levels, likelihood)
    x = np.random.default_rng(1).integers(0, levels, (5, channels, height, width)).astype(np.uint8)
    out = tmp_path_factory.mktemp(name) / "bundle"
    return model, export_bundle(model, ImageSpec(channels, height, width, levels), x, out, log=lambda s: None).bundle


@pytest.fixture(scope="session")
def vae_grey_bundle(tmp_path_factory):
    """(model, bundle): VAE, 1x5x6 images, 7 levels, discretized logistic, latent 3."""
    return _vae_bundle(tmp_path_factory, 1, 5, 6, 7, "logistic", "vae-grey")


def tiny_pixelvae(channels: int, height: int, width: int, levels: int, seed: int = 0, **overrides):
    from pixelrt.models import PixelVAE, PixelVAEConfig

    torch.manual_seed(seed)
    cfg = dict(channels=channels, levels=levels, height=height, width=width, latent=2, hidden=4, downsample=1,
               dense=16, pixel_hidden=4 * channels, pixel_layers=2, input_kernel=3, head_hidden=4 * channels)
    return PixelVAE(PixelVAEConfig(**{**cfg, **overrides})).eval()


@pytest.fixture(scope="session")
def pixelvae_bundle(tmp_path_factory):
    """(model, bundle): PixelVAE, 1x4x5 images, 5 levels, latent 2, a 2-layer Gated PixelCNN given z."""
    from pixelrt.export import export_bundle

    model = tiny_pixelvae(1, 4, 5, 5)
    x = np.random.default_rng(1).integers(0, 5, (5, 1, 4, 5)).astype(np.uint8)
    out = tmp_path_factory.mktemp("pixelvae") / "bundle"
    return model, export_bundle(model, ImageSpec(1, 4, 5, 5), x, out, log=lambda s: None).bundle


@pytest.fixture(scope="session")
def vae_rgb_bundle(tmp_path_factory):
    """(model, bundle): VAE, 3x4x5 images, 5 levels, levels-way categorical, latent 3."""
    return _vae_bundle(tmp_path_factory, 3, 4, 5, 5, "categorical", "vae-rgb")
