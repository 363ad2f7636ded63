"""Diagonal BiLSTM bundles: step + per-row graph in ORT == PyTorch, the parity table, a second image size."""
import numpy as np
import pytest
import torch

from pixelrt.export.exporter import export_full
from pixelrt.parity.autoregressive import run_parity
from pixelrt.export.validator import BPD_BUDGET, LOGP_BUDGET
from pixelrt.bundle import ImageSpec
from pixelrt.runtime.ort_backend import OrtBackend
from tests.models.test_diagbilstm import tiny_diagbilstm


@pytest.fixture(scope="module")
def diag_bundle(tmp_path_factory):
    from pixelrt.export import export_bundle

    model = tiny_diagbilstm(1, levels=7, layers=1)  # export unrolls the loops: keep the graphs small
    image = ImageSpec(1, 4, 5, 7)
    x = np.random.default_rng(1).integers(0, 7, (5, *image.shape)).astype(np.uint8)
    out = tmp_path_factory.mktemp("diagbilstm") / "bundle"
    return model, export_bundle(model, image, x, out, log=lambda s: None).bundle


def test_bundle_declares_the_row_graph_and_its_state(diag_bundle):
    _, bundle = diag_bundle
    assert bundle.step_schedule.row_graph == "row"
    rev = [s for s in bundle.state if s.update == "row"]
    assert [s.name for s in rev] == ["rev"] and rev[0].shape == ("batch", 1, 5, 2)
    assert bundle.graphs["row"].input_names() == ["row_pixels", "cache_1", "rev"]
    assert bundle.manifest.validation["row_max_dnew_rev"] <= LOGP_BUDGET


def test_full_graph_at_a_second_image_size(diag_bundle, tmp_path):
    """The diagonal loop is unrolled at the traced H x W; the same weights exported at 7x4 agree with PyTorch."""
    model, bundle = diag_bundle
    assert bundle.graphs["full"].inputs[0].shape[1:] == (1, 4, 5)
    export_full(model, (1, 7, 4), tmp_path / "full_7x4.onnx")
    x = np.random.default_rng(2).integers(0, 7, (3, 1, 7, 4)).astype(np.uint8)
    with OrtBackend(tmp_path / "full_7x4.onnx") as full:
        out = full.infer({"x": x})
    with torch.no_grad():
        ref = model.log_prob(torch.from_numpy(x)).numpy()
    image = ImageSpec(1, 7, 4, 7)
    assert np.abs(image.bits_per_dim(out["loglik"]) - image.bits_per_dim(ref.reshape(3, -1).sum(1))).max() <= BPD_BUDGET
    assert np.abs(out["logp"] - ref).max() <= LOGP_BUDGET


def test_parity_table_passes_every_budget(diag_bundle):
    model, bundle = diag_bundle
    x = np.random.default_rng(3).integers(0, 7, (6, *bundle.image.shape)).astype(np.uint8)
    report = run_parity(model, bundle, x, samples=4, teacher=4, log=lambda s: None)
    failed = [r.check for r in report.rows if not r.ok]
    assert not failed, failed
    checks = {r.check: r for r in report.rows}
    assert checks["sampled: summed step log p vs full loglik (ORT)"].max <= BPD_BUDGET
    assert checks["step vs full conditionals (ORT)"].max <= LOGP_BUDGET
    assert checks["samples under shared noise: ORT vs PyTorch step"].mean >= 0.9
    assert checks["samples under shared noise: ORT step vs naive oracle"].mean >= 0.9


def test_emulated_device_loop_plan_equals_bundle_loop(diag_bundle):
    """--runtime trt's device loop (a row graph that reads the step's ring cache), emulated on CPU."""
    from tests.runtime.device_emulation import assert_device_plan_matches_bundle_loop

    assert_device_plan_matches_bundle_loop(diag_bundle[1])


def test_tensorrt_parser_check_passes(diag_bundle):
    """doctor: full, step and row graphs pass (the full graph's Shape of the uint8 image is fed through a Cast
    by the exporter, export/onnx_export.py)."""
    from tests.runtime.device_emulation import assert_tensorrt_parser_check_passes

    assert_tensorrt_parser_check_passes(diag_bundle[1])
