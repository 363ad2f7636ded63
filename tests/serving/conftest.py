"""Serving fixtures: one tiny label-conditional bundle and one real Triton server on loopback for the session.

The bundle is a Gated PixelCNN on 1x8x8 images with 17 levels and 10 classes (the digits data's geometry): its
label is per-image context and its vertical stack a per-row graph, so merging requests exercises every kind of
feed the step loop has. The server is nvidia-pytriton's tritonserver; the tests skip, naming why, only when that
binary (or a Python-backend stub for this interpreter) is not installed.
"""
from __future__ import annotations

import numpy as np
import pytest

from pixelrt.bundle import ImageSpec

IMAGE = ImageSpec(1, 8, 8, 17)
CLASSES = 10
MODEL, STREAMED = "digits8", "digits8s"  # the served model pair, and a decoupled copy that streams rows


@pytest.fixture(scope="session")
def served_bundle(tmp_path_factory):
    import torch

    from pixelrt.export import export_bundle
    from pixelrt.models.gated import GatedPixelCNN, GatedPixelCNNConfig

    torch.manual_seed(0)
    model = GatedPixelCNN(GatedPixelCNNConfig(channels=1, levels=17, hidden=8, layers=2, input_kernel=3, kernel=3,
                                              head_hidden=8, num_classes=CLASSES)).eval()
    rng = np.random.default_rng(1)
    x = rng.integers(0, 17, (4, *IMAGE.shape)).astype(np.uint8)
    out = tmp_path_factory.mktemp("served") / "digits8"
    return export_bundle(model, IMAGE, x, out, context={"label": np.arange(4) % CLASSES}, log=lambda s: None).bundle


@pytest.fixture(scope="session")
def triton(served_bundle, tmp_path_factory):
    """(server, repository) for served_bundle: started once, stopped at the end of the session. The server also
    holds the decoupled repository STREAMED."""
    from pixelrt.serving.server import available, serve_bundle

    reason = available()
    if reason:
        pytest.skip(f"no tritonserver binary: {reason}")
    from pixelrt.serving.repository import write_repository

    work = tmp_path_factory.mktemp("triton")
    repo, server = serve_bundle(served_bundle, work, MODEL, max_batch=64)
    streamed = write_repository(served_bundle, work / "streamed", STREAMED, likelihood_backend="python", decoupled=True)
    server.repositories.append(streamed.root)  # one server, both repositories
    with server:
        yield server, repo
