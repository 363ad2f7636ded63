"""PixelCNN++: causality, cached row + step graphs == full path (grey and colour), sampling parity, config checks."""
import numpy as np
import pytest
import torch

from pixelrt.models import PixelCNNPP, PixelCNNPPConfig
from pixelrt.models.causality import audit
from pixelrt.models.reference import TorchRowRunner, TorchStepRunner
from pixelrt.bundle import ImageSpec
from pixelrt.runtime.sampler import make_noise, step_loop

BPD_BUDGET, LOGP_BUDGET = 1e-5, 1e-4


def tiny(channels, levels=16, resolutions=3, seed=0):
    torch.manual_seed(seed)
    cfg = PixelCNNPPConfig(channels=channels, levels=levels, filters=8, resnets=1, resolutions=resolutions,
                           mixtures=3, dropout=0.0)
    return PixelCNNPP(cfg).eval()


def cached_loop(model, image, noise=None, force=None, seed=0, batch_size=64):
    step = TorchStepRunner(model, image)
    states, sched = step.step.states, step.step.schedule
    noise = make_noise(len(force) if noise is None else noise, image, seed, sched) if not isinstance(noise, np.ndarray) else noise
    return step_loop(step, image, states, noise, force=force, schedule=sched,
                     row_runner=TorchRowRunner(model, image), batch_size=batch_size)


@pytest.mark.parametrize("channels", [1, 3])
def test_pixel_parameters_read_only_earlier_pixels_and_all_of_them(channels):
    model = tiny(channels)
    x = torch.rand(1, channels, 8, 8) * 2 - 1
    report = audit(model.params_from_float, x, groups=1, strict=True)  # a whole pixel is one group
    assert report.violations == 0
    # no blind spot: the u (above) and ul (left) streams reach the causal past; with one block per
    # level this tiny model misses 1 of its 2016 (output, earlier input) pixel pairs at the far right
    assert report.coverage > 0.99


@pytest.mark.parametrize("channels,height,width,resolutions", [(1, 8, 8, 3), (3, 8, 8, 3), (3, 4, 6, 2)])
def test_cached_step_conditionals_equal_the_full_path(channels, height, width, resolutions):
    """Teacher-forced through the row + step modules, every sub-pixel conditional matches."""
    model = tiny(channels, resolutions=resolutions)
    image = ImageSpec(channels, height, width, 16)
    x = np.random.default_rng(1).integers(0, 16, (2, *image.shape)).astype(np.uint8)
    res = cached_loop(model, image, noise=2, force=x)
    np.testing.assert_array_equal(res.images, x)
    with torch.no_grad():
        full = model.log_prob(torch.from_numpy(x)).numpy()
    assert np.abs(res.logp - full).max() < LOGP_BUDGET


@pytest.mark.parametrize("channels", [1, 3])
def test_summed_sample_log_probs_equal_the_full_log_likelihood(channels):
    model = tiny(channels, seed=2)
    image = ImageSpec(channels, 8, 8, 16)
    res = cached_loop(model, image, noise=3, seed=3)
    with torch.no_grad():
        full = model.log_prob(torch.from_numpy(res.images)).numpy()
    assert np.abs(image.bits_per_dim(res.loglik) - image.bits_per_dim(full.reshape(3, -1).sum(1))).max() < BPD_BUDGET
    assert np.abs(res.logp - full).max() < LOGP_BUDGET
    assert len({img.tobytes() for img in res.images}) == 3  # different noise, different images


def test_config_and_image_size_are_checked():
    with pytest.raises(ValueError, match="mixtures"):
        PixelCNNPP(PixelCNNPPConfig(mixtures=0))
    model = tiny(1)
    with pytest.raises(ValueError, match="divisible by 4"):
        model.log_prob(torch.zeros(1, 1, 6, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible by 4"):
        TorchStepRunner(model, ImageSpec(1, 6, 8, 16))  # the step module is declared for one image size


def test_dropout_acts_in_training_only():
    torch.manual_seed(0)
    model = PixelCNNPP(PixelCNNPPConfig(channels=1, levels=16, filters=8, resnets=1, mixtures=3, dropout=0.5))
    x = torch.randint(0, 16, (2, 1, 8, 8))
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
