"""Model level: causality audit, step == full, naive oracle == step sampler, registry walk."""
import numpy as np
import pytest
import torch

from pixelrt.models import get_model, model_names
from pixelrt.models.causality import audit_model
from pixelrt.models.reference import TorchRowRunner, TorchStepRunner, naive_sample
from pixelrt.bundle import ImageSpec
from pixelrt.runtime.sampler import make_noise, step_loop
from tests.conftest import tiny_pixelcnn


@pytest.mark.parametrize("channels", [1, 3])
def test_model_is_causal_and_sees_its_past(channels):
    model = tiny_pixelcnn(channels, levels=5)
    report = audit_model(model, (channels, 5, 5))
    assert report.violations == 0
    assert report.checked == channels * 25
    # PixelCNN's stacked 3x3 Mask-B convs leave a blind spot, but most of the past is seen
    assert 0.5 < report.coverage < 1.0


def test_audit_catches_a_leak():
    model = tiny_pixelcnn(1, levels=5)
    model.input_conv.mask.fill_(1.0)  # Mask A removed: the centre pixel leaks into its own logits
    assert audit_model(model, (1, 4, 4)).violations > 0


@pytest.mark.parametrize("channels", [1, 3])
def test_step_conditionals_equal_full_conditionals(channels):
    model = tiny_pixelcnn(channels, levels=6)
    image = ImageSpec(channels, 4, 5, 6)
    x = np.random.default_rng(0).integers(0, 6, (3, *image.shape)).astype(np.uint8)
    runner = TorchStepRunner(model, image)
    res = step_loop(runner, image, runner.step.states, make_noise(3, image, 0), force=x)
    with torch.no_grad():
        full = model.log_prob(torch.from_numpy(x)).numpy()
    assert np.array_equal(res.images, x)
    assert np.abs(res.logp - full).max() < 1e-4


@pytest.mark.parametrize("channels", [1, 3])
def test_step_sampler_matches_naive_oracle_and_full_likelihood(channels):
    model = tiny_pixelcnn(channels, levels=6, seed=3)
    image = ImageSpec(channels, 4, 4, 6)
    noise = make_noise(4, image, seed=7)
    runner = TorchStepRunner(model, image)
    res = step_loop(runner, image, runner.step.states, noise)
    naive_images, naive_logp = naive_sample(model, noise, image.levels)
    assert np.array_equal(res.images, naive_images)
    assert np.abs(res.logp - naive_logp).max() < 1e-4
    with torch.no_grad():
        full_ll = model(torch.from_numpy(res.images)).double().numpy()
    assert np.abs(res.loglik - full_ll).max() < 1e-4 * image.dims  # summed sample log-probs == full loglik


def test_pixel_channels_at_or_after_the_current_one_do_not_leak_into_the_step():
    model = tiny_pixelcnn(3, levels=5)
    runner = TorchStepRunner(model, ImageSpec(3, 5, 5, 5))
    specs = runner.step.states
    rng = np.random.default_rng(0)
    caches = {s.name: rng.standard_normal((2, *s.shape[1:])).astype(np.float32) for s in specs}
    for c in range(3):
        outs = []
        for trial in range(2):
            pixel = rng.integers(0, 5, (2, 3)).astype(np.int64)
            pixel[:, :c] = [1, 2, 3][:c]  # the known channels are fixed, the rest vary
            feeds = {"pixel": pixel, "row": np.array(2), "col": np.array(3), "channel": np.array(c),
                     "force": np.full(2, -1), "noise": np.full(2, 0.5, np.float32), **caches}
            outs.append(runner.infer(feeds)["logp"])
        assert np.array_equal(outs[0], outs[1])


def test_registry_refuses_duplicates_and_unknown_names():
    from pixelrt.errors import PixelrtError
    from pixelrt.models.registry import register_model

    with pytest.raises(ValueError, match="already registered"):
        register_model("pixelcnn", object, "dup")(lambda c: None)
    with pytest.raises(PixelrtError, match="unknown model"):
        get_model("no-such-model")
    with pytest.raises(PixelrtError, match="no config field"):
        get_model("pixelcnn").make_config(widht=3)


@pytest.mark.parametrize("name", [n for n in model_names() if get_model(n).kind == "autoregressive"])
def test_every_registered_model_is_causal_and_steps_like_it_runs(name):
    """Walks the registry, so no model goes untested."""
    entry = get_model(name)
    model = entry.build(entry.make_config(channels=1, levels=4)).eval()
    assert audit_model(model, (1, 4, 4)).violations == 0
    image = ImageSpec(1, 4, 4, 4)
    x = np.random.default_rng(0).integers(0, 4, (2, *image.shape)).astype(np.uint8)
    step = model.step_module(image)  # the step protocol: states, schedule and any per-row module declared
    row = TorchRowRunner(model, image) if step.schedule.row_graph else None
    res = step_loop(TorchStepRunner(model, image), image, step.states, make_noise(2, image, 0, step.schedule), force=x,
                    schedule=step.schedule, row_runner=row)
    with torch.no_grad():
        assert np.abs(res.logp - model.log_prob(torch.from_numpy(x)).numpy()).max() < 1e-4


def test_default_widths_fit_the_colour_groups_and_explicit_ones_are_checked():
    from pixelrt.models import PixelCNN, PixelCNNConfig

    rgb = PixelCNNConfig(channels=3, levels=8)
    assert rgb.hidden % 6 == 0 and rgb.head_hidden % 3 == 0 and rgb.hidden <= 128
    PixelCNN(rgb)  # builds
    with pytest.raises(ValueError, match="divisible by 2\\*channels=6"):
        PixelCNN(PixelCNNConfig(channels=3, hidden=128))
    with pytest.raises(ValueError, match="odd"):
        PixelCNN(PixelCNNConfig(block_kernel=4))
