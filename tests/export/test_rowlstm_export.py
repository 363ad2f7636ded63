"""Row LSTM bundles: ORT == PyTorch at two image sizes (same weights), and the whole parity table."""
import numpy as np
import pytest
import torch

from pixelrt.export.exporter import export_full
from pixelrt.parity.autoregressive import run_parity
from pixelrt.export.validator import BPD_BUDGET, LOGP_BUDGET
from pixelrt.bundle import ImageSpec
from pixelrt.runtime.ort_backend import OrtBackend
from tests.models.test_rowlstm import tiny_rowlstm


@pytest.fixture(scope="module")
def rowlstm_bundle(tmp_path_factory):
    from pixelrt.export import export_bundle

    model = tiny_rowlstm(1, levels=7)
    image = ImageSpec(1, 5, 6, 7)
    x = np.random.default_rng(1).integers(0, 7, (5, *image.shape)).astype(np.uint8)
    out = tmp_path_factory.mktemp("rowlstm") / "bundle"
    return model, export_bundle(model, image, x, out, log=lambda s: None).bundle


def test_full_graph_is_exported_for_its_image_size_and_a_second_size_works(rowlstm_bundle, tmp_path):
    """The row recurrence is unrolled at the traced H (the bundle is for one size): the 5x6 bundle's graph
    declares 5x6, and the same weights exported at 7x4 agree with PyTorch at 7x4."""
    model, bundle = rowlstm_bundle
    assert bundle.graphs["full"].inputs[0].shape[1:] == (1, 5, 6)
    export_full(model, (1, 7, 4), tmp_path / "full_7x4.onnx")
    for path, shape in ((bundle.graph_path("full"), (1, 5, 6)), (tmp_path / "full_7x4.onnx", (1, 7, 4))):
        x = np.random.default_rng(2).integers(0, 7, (3, *shape)).astype(np.uint8)
        with OrtBackend(path) as full:
            out = full.infer({"x": x})
        with torch.no_grad():
            ref = model.log_prob(torch.from_numpy(x)).numpy()
        image = ImageSpec(*shape, 7)
        dbpd = np.abs(image.bits_per_dim(out["loglik"]) - image.bits_per_dim(ref.reshape(3, -1).sum(1)))
        assert dbpd.max() <= BPD_BUDGET
        assert np.abs(out["logp"] - ref).max() <= LOGP_BUDGET


def test_bundle_is_for_the_traced_image_size(rowlstm_bundle):
    _, bundle = rowlstm_bundle
    assert bundle.graphs["full"].inputs[0].shape[1:] == (1, 5, 6)
    assert bundle.step_schedule.row_graph is None and {s.update for s in bundle.state} == {"ring-row"}


def test_parity_table_passes_every_budget(rowlstm_bundle):
    model, bundle = rowlstm_bundle
    x = np.random.default_rng(3).integers(0, 7, (6, *bundle.image.shape)).astype(np.uint8)
    report = run_parity(model, bundle, x, samples=4, teacher=4, log=lambda s: None)
    failed = [r.check for r in report.rows if not r.ok]
    assert not failed, failed
    checks = {r.check: r for r in report.rows}
    assert checks["sampled: summed step log p vs full loglik (ORT)"].max <= BPD_BUDGET
    assert checks["step vs full conditionals (ORT)"].max <= LOGP_BUDGET
    assert checks["samples under shared noise: ORT step vs naive oracle"].mean >= 0.9


def test_device_loop_plan_and_tensorrt_parser_check(rowlstm_bundle):
    """--runtime trt's device loop emulated on CPU (bit-identical to bundle_loop); doctor's findings."""
    from tests.runtime.device_emulation import assert_device_plan_matches_bundle_loop, assert_tensorrt_parser_check_passes

    assert_device_plan_matches_bundle_loop(rowlstm_bundle[1])
    assert_tensorrt_parser_check_passes(rowlstm_bundle[1])  # full graph too: its Shape(x) reads a Cast
