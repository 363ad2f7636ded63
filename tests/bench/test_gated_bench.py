"""Gated PixelCNN bench FLOP counts against the weights its step and row modules really multiply."""
import pytest

from pixelrt.bench.flops import gated_dense_flops_per_pixel as dense_flops_per_pixel
from pixelrt.bench.flops import gated_step_flops_per_pixel as step_flops_per_pixel
from pixelrt.bench.specs import GATED28
from pixelrt.bundle import ImageSpec
from pixelrt.models.gated import GatedPixelCNN, GatedPixelCNNConfig


@pytest.mark.parametrize("cfg", [
    GatedPixelCNNConfig(channels=1, levels=5, hidden=4, layers=2, head_hidden=2),
    GatedPixelCNNConfig(channels=3, levels=4, hidden=6, layers=3, input_kernel=5, head_hidden=6),
])
def test_flops_match_the_step_and_row_modules(cfg):
    model = GatedPixelCNN(cfg)
    image = ImageSpec(cfg.channels, 5, 6, cfg.levels)
    step, row = model.step_module(image), model.row_module(image)
    step_macs = sum(b.numel() for n, b in step.named_buffers() if n.split(".")[-1].startswith(("w_centre", "w_window")))
    row_macs = sum(v.weight.numel() for v in row.vconvs) + row.w_link.numel()  # per column of a row
    assert step_flops_per_pixel(cfg) == 2 * (cfg.channels * step_macs + row_macs)
    assert dense_flops_per_pixel(cfg) > row_macs * 2  # the naive path re-runs both stacks


def test_gated28_builds_the_registered_model():
    spec = GATED28
    model = spec.build()
    assert isinstance(model, GatedPixelCNN) and spec.image.shape == (1, 28, 28)
