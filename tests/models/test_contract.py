"""The model contract: a user's own model through the Python API, refusals that name what is missing, and a
wrong step module caught at export (it validates against the full graph, not against itself)."""
import numpy as np
import pytest
import torch
from torch import nn

import pixelrt
from pixelrt.bundle import ImageSpec
from pixelrt.errors import ParityError, PixelrtError
from pixelrt.export.validator import BPD_BUDGET, LOGP_BUDGET
from pixelrt.models.causal import CausalSequential, CausalSequentialStep, GatedActivation, Residual
from pixelrt.models.layers import MaskedConv2d


def composed(channels: int = 3, levels: int = 5, seed: int = 0) -> CausalSequential:
    """No registry entry and a configuration no family uses: RGB, gated residual blocks with ELU, a 5x5
    Mask A input, 3x3 and 5x5 Mask B convs (two cache geometries), a 1x1 head."""
    torch.manual_seed(seed)
    C = channels
    return CausalSequential(C, levels, [
        MaskedConv2d(C, 4 * C, 5, "A", C),
        Residual(nn.ELU(), MaskedConv2d(4 * C, 4 * C, 3, "B", C), GatedActivation(C), MaskedConv2d(2 * C, 4 * C, 1, "B", C)),
        Residual(nn.ELU(), MaskedConv2d(4 * C, 8 * C, 5, "B", C), GatedActivation(C)),
        Residual(nn.ELU(), MaskedConv2d(4 * C, 4 * C, 3, "B", C), GatedActivation(C), MaskedConv2d(2 * C, 4 * C, 1, "B", C)),
        nn.ReLU(), MaskedConv2d(4 * C, C * levels, 1, "B", C)]).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = composed()
    image = ImageSpec(3, 4, 5, 5)
    x = np.random.default_rng(0).integers(0, 5, (3, *image.shape)).astype(np.uint8)
    out = tmp_path_factory.mktemp("composed") / "bundle"
    return model, image, pixelrt.export_model(model, image, out, data=x, log=lambda s: None)


def test_composed_model_exports_through_the_python_api(exported):
    model, image, result = exported
    rep = result.report
    assert rep.ok and result.bundle.kind == "autoregressive" and result.bundle.family == "causal-sequential"
    assert [s.name for s in result.bundle.state] == ["cache_0", "cache_1", "cache_2"]  # 5x5 A, 3x3 B (x2), 5x5 B
    assert rep.row("step_vs_full_max_dlogp").max <= LOGP_BUDGET      # step == full, teacher-forced, in ORT
    assert rep.row("step_vs_full_max_dbpd").max <= BPD_BUDGET
    assert rep.row("full_max_dbpd").max <= BPD_BUDGET                  # ORT == PyTorch at batch 3 (traced at 2)
    assert rep.row("step_max_dlogp").max <= LOGP_BUDGET
    assert rep.row("sampled_vs_full_max_dbpd").max <= BPD_BUDGET       # sampled log p == full log-likelihood
    assert rep.row("causality_max_dlogp").max == 0.0


def test_composed_bundle_samples_and_scores_like_pytorch(exported):
    """Independently of the exporter's own checks: sample with the runtime, score the samples in PyTorch."""
    from pixelrt.runtime.ort_backend import OrtBackend
    from pixelrt.runtime.sampler import bundle_loop, make_noise

    model, image, result = exported
    bundle = result.bundle
    with OrtBackend(bundle.graph_path("step")) as step:
        s = bundle_loop(step, None, bundle, make_noise(4, image, seed=3, schedule=bundle.step_schedule))
    with torch.no_grad():
        full = model(torch.from_numpy(s.images)).double().numpy()
    assert np.abs(image.bits_per_dim(s.loglik) - image.bits_per_dim(full)).max() <= BPD_BUDGET


def test_torch_step_path_is_derived_from_the_layers():
    from pixelrt.models.reference import TorchStepRunner
    from pixelrt.runtime.sampler import make_noise, step_loop

    model, image = composed(1, 4, seed=2), ImageSpec(1, 5, 4, 4)
    x = np.random.default_rng(1).integers(0, 4, (2, *image.shape)).astype(np.uint8)
    runner = TorchStepRunner(model, image)
    res = step_loop(runner, image, runner.step.states, make_noise(2, image, 0), force=x)
    with torch.no_grad():
        assert np.abs(res.logp - model.log_prob(torch.from_numpy(x)).numpy()).max() <= LOGP_BUDGET


class PlainPixelCNN(nn.Module):
    """What a tutorial PixelCNN looks like: nn.Conv2d with a mask, log_prob, no step path."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)

    def log_prob(self, x):
        return self.conv(x.float())[:, :1]


@pytest.mark.parametrize("module, missing", [(nn.Conv2d(1, 1, 3), "log_prob, step_module, describe"),
                                             (PlainPixelCNN(), "step_module, describe")])
def test_a_module_without_the_protocol_is_refused_by_name(module, missing, tmp_path):
    with pytest.raises(PixelrtError, match=rf"missing {missing} .*docs/export-your-model.md"):
        pixelrt.export_model(module, (1, 4, 4, 4), tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_layers_without_a_step_path_are_refused_by_name():
    with pytest.raises(ValueError, match="BatchNorm2d, which CausalSequential cannot derive a step path for"):
        CausalSequential(1, 4, [MaskedConv2d(1, 4, 3, "A", 1), nn.BatchNorm2d(4), MaskedConv2d(4, 4, 1, "B", 1)])
    with pytest.raises(ValueError, match="first conv must be Mask A"):
        CausalSequential(1, 4, [MaskedConv2d(1, 4, 3, "B", 1), MaskedConv2d(4, 4, 1, "B", 1)])


class WrongCache(CausalSequential):
    """A step module that caches the wrong tensor (half of a block's conv input): its ORT graph equals its
    PyTorch module exactly, so only a check against the full graph can see it."""

    def step_module(self, image):
        return HalvedCache(self, image.width)


class HalvedCache(CausalSequentialStep):
    def forward(self, *args):
        out = super().forward(*args)
        return (*out[:3], out[3] * 0.5, *out[4:])


def test_a_step_module_that_caches_the_wrong_tensor_is_refused(tmp_path):
    good = composed(1, 4, seed=4)
    bad = WrongCache(1, 4, list(good.layers)).eval()
    x = np.random.default_rng(2).integers(0, 4, (3, 1, 4, 5)).astype(np.uint8)
    with pytest.raises(ParityError, match="teacher-forced ORT step loop vs ORT full graph") as err:
        pixelrt.export_model(bad, (1, 4, 5, 4), tmp_path / "b", data=x, log=lambda s: None)
    assert "step: logp per sub-pixel" not in str(err.value)  # ORT == PyTorch held: the step module is self-consistent
    assert not (tmp_path / "b").exists()


def test_a_config_that_cannot_export_is_refused_before_training():
    from pixelrt.models import get_model
    from pixelrt.models.contract import check_exportable

    entry = get_model("pixelcnn")
    for key in ("block_kernel", "input_kernel"):
        with pytest.raises(ValueError, match=rf"{key}=1 must be an odd number of at least 3"):
            entry.build(entry.make_config(channels=1, levels=4, **{key: 1}))
    gated = get_model("gated")
    model = gated.build(gated.make_config(channels=1, levels=4, cond_shape=[2, 3, 3]))
    with pytest.raises(PixelrtError, match="trains but cannot be exported for 1x4x4 images: .*conditioning map"):
        check_exportable(model, ImageSpec(1, 4, 4, 4))


def test_parity_runs_on_a_model_outside_the_registry(exported):
    """pixelrt.check_parity: the kind's table works for a model no registry entry knows."""
    model, image, result = exported
    held = np.random.default_rng(5).integers(0, 5, (10, *image.shape)).astype(np.uint8)
    report = pixelrt.check_parity(model, result.bundle, data=held, num=6, samples=2, teacher=2, log=lambda s: None)
    assert report.ok, report.table()
    rows = {r.check: r for r in report.rows}
    assert rows["sampled: summed step log p vs full loglik (ORT)"].max <= BPD_BUDGET
    assert rows["step vs full conditionals (ORT)"].max <= LOGP_BUDGET


@pytest.mark.parametrize("kwargs, message", [
    (dict(image=(1, -4, 4, 4)), r"image.height must be an integer in 1..4096, got -4"),
    (dict(image=(1, 4, 4, 300)), r"image.levels must be an integer in 2..256, got 300"),
    (dict(image=(1, float("nan"), 4, 4)), r"image.height must be an integer in 1..4096, got NaN"),
    (dict(image="1x4x4"), r"image must be an ImageSpec or \(channels, height, width, levels\)"),
    (dict(image=(1, 4, 4, 4), reference=10**9), r"reference must be an integer number of images in 1..4096"),
    (dict(image=(1, 4, 4, 4), data=np.zeros((2, 1, 5, 5), np.uint8)), r"reference images are 1x5x5"),
])
def test_export_model_refuses_bad_arguments_with_one_message(kwargs, message, tmp_path):
    model = CausalSequential(1, 4, [MaskedConv2d(1, 4, 3, "A", 1), MaskedConv2d(4, 4, 1, "B", 1)])
    with pytest.raises(PixelrtError, match=message):
        pixelrt.export_model(model, out=tmp_path / "b", log=lambda s: None, **kwargs)
    assert list(tmp_path.iterdir()) == []


class UndeclaredStep(CausalSequential):
    """step_module returns a plain nn.Module that declares nothing."""

    def step_module(self, image):
        return nn.Identity()


def test_a_step_module_that_declares_nothing_is_refused_by_name(tmp_path):
    model = UndeclaredStep(1, 4, [MaskedConv2d(1, 4, 3, "A", 1), MaskedConv2d(4, 4, 1, "B", 1)])
    with pytest.raises(PixelrtError, match=r"UndeclaredStep.step_module\(image\) returned a Identity, not a "
                                           r"pixelrt.models.contract.StepModule declaring graph \(a GraphSpec\) "
                                           r"and schedule"):
        pixelrt.export_model(model, (1, 4, 4, 4), tmp_path / "b", log=lambda s: None)
    assert list(tmp_path.iterdir()) == []
