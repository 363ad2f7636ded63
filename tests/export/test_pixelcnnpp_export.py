"""PixelCNN++ bundles: full, row and step graphs in ONNX Runtime against PyTorch, within the FP32 budgets."""
import numpy as np
import pytest
import torch

from pixelrt.export import export_bundle
from pixelrt.models import PixelCNNPP, PixelCNNPPConfig
from pixelrt.models.reference import TorchRowRunner, TorchStepRunner
from pixelrt.runtime.backends import step_backends
from pixelrt.bundle import ImageSpec, load_bundle
from pixelrt.runtime.evaluate import evaluate
from pixelrt.runtime.ort_backend import OrtBackend
from pixelrt.runtime.sampler import bundle_loop, make_noise

BPD_BUDGET, LOGP_BUDGET = 1e-5, 1e-4


def _export(tmp_path, channels, height, width, resolutions):
    torch.manual_seed(0)
    model = PixelCNNPP(PixelCNNPPConfig(channels=channels, levels=16, filters=8, resnets=1,
                                        resolutions=resolutions, mixtures=3, dropout=0.0)).eval()
    image = ImageSpec(channels, height, width, 16)
    x = np.random.default_rng(0).integers(0, 16, (3, *image.shape)).astype(np.uint8)
    result = export_bundle(model, image, x, tmp_path / "b", log=lambda s: None)
    return model, result, x


def _check(model, result, x):
    bundle = load_bundle(result.bundle.root)
    img, sched = bundle.image, bundle.step_schedule
    assert sched.substeps_per_pixel == 1 and sched.row_graph == "row"
    assert {s.update for s in bundle.state} == {"ring-row", "strided-ring-row", "row"} or img.height < 4
    v = result.report
    assert v.ok and v.row("full_max_dbpd").max < BPD_BUDGET and v.row("step_max_dlogp").max < LOGP_BUDGET
    assert max(r.max for r in v.rows if r.key.startswith(("step_max_d", "row_max_d"))) < LOGP_BUDGET
    with torch.no_grad():
        t_logp = model.log_prob(torch.from_numpy(x)).numpy()
    with OrtBackend(bundle.graph_path("full")) as full, step_backends("ort", bundle) as (step, row):
        o = evaluate(full, bundle, x)
        assert np.abs(o.bits_per_dim - img.bits_per_dim(t_logp.reshape(len(x), -1).sum(1))).max() < BPD_BUDGET
        tf = bundle_loop(step, row, bundle, make_noise(len(x), img, 1, sched), force=x)
        assert np.abs(tf.logp - o.logp).max() < LOGP_BUDGET  # ORT step == ORT full, every sub-pixel
        noise = make_noise(4, img, 2, sched)
        s = bundle_loop(step, row, bundle, noise)
        sf = evaluate(full, bundle, s.images)
        assert np.abs(img.bits_per_dim(s.loglik) - sf.bits_per_dim).max() < BPD_BUDGET
    t = bundle_loop(TorchStepRunner(model, img), TorchRowRunner(model, img), bundle, noise)
    assert (t.images == s.images).mean() >= 0.9  # same noise, same samples (up to float ties)
    from tests.runtime.device_emulation import assert_device_plan_matches_bundle_loop, assert_tensorrt_parser_check_passes

    assert_device_plan_matches_bundle_loop(bundle)  # --runtime trt's device loop (strided rings too), on CPU
    assert_tensorrt_parser_check_passes(bundle)


def test_colour_bundle_matches_pytorch_everywhere(tmp_path):
    _check(*_export(tmp_path, channels=3, height=4, width=4, resolutions=2))


@pytest.mark.slow
def test_grey_three_resolution_bundle_matches_pytorch_everywhere(tmp_path):
    _check(*_export(tmp_path, channels=1, height=8, width=8, resolutions=3))
