"""Multi-Scale PixelRNN: coarsening rule, per-stage causality, conditioning wired in, step == full."""
import numpy as np
import pytest
import torch

from pixelrt.models import get_model, model_names
from pixelrt.models.causality import audit, audit_model
from pixelrt.models.multiscale import GivenCoarse, MultiScale, MultiScaleConfig, coarsen, conditional_logits
from pixelrt.models.reference import TorchStepRunner
from pixelrt.runtime import multiscale as rt
from pixelrt.bundle import ImageSpec, StepSchedule
from pixelrt.runtime.sampler import make_noise, step_loop

LOGP_BUDGET = 1e-4


def tiny(channels=1, levels=16, layers=2, seed=0) -> MultiScale:
    torch.manual_seed(seed)
    return MultiScale(MultiScaleConfig(channels=channels, levels=levels, hidden=4 * channels, state=2 * channels,
                                       layers=layers, input_kernel=3, row_kernel=3, head_hidden=4 * channels,
                                       up_channels=4)).eval()


def test_coarsen_rounds_the_block_mean_half_down():
    blocks = {(0, 0, 1, 1): 0, (1, 1, 1, 0): 1, (0, 0, 0, 1): 0, (1, 1, 2, 2): 1, (1, 2, 2, 2): 2,
              (255, 255, 255, 255): 255, (254, 255, 255, 255): 255, (254, 254, 255, 255): 254}
    for vals, want in blocks.items():
        x = torch.tensor(vals, dtype=torch.uint8).reshape(1, 1, 2, 2)
        assert int(coarsen(x)) == want, vals
        assert int(rt.coarsen(x.numpy()).item()) == want, vals


def test_coarsen_torch_and_runtime_agree_and_stay_in_range():
    x = np.random.default_rng(0).integers(0, 256, (5, 3, 8, 6)).astype(np.uint8)
    a, b = coarsen(torch.from_numpy(x)).numpy(), rt.coarsen(x)
    assert a.shape == b.shape == (5, 3, 4, 3) and a.dtype == b.dtype == np.uint8
    assert np.array_equal(a, b)
    mean = x.astype(np.float64).reshape(5, 3, 4, 2, 3, 2).mean((3, 5))
    tie = mean % 1 == 0.5
    assert tie.any() and np.array_equal(a[tie], np.floor(mean[tie]))  # ties go down
    assert np.array_equal(a[~tie], np.round(mean[~tie]))  # otherwise the nearest level
    with pytest.raises(ValueError, match="even"):
        coarsen(torch.zeros(1, 1, 3, 4, dtype=torch.uint8))


@pytest.mark.parametrize("channels", [1, 3])
def test_each_stage_is_causal(channels):
    """The coarse image is a function of ALL fine pixels (future ones included), so the whole x -> log p
    map is not autoregressive in raster order by design: c is sampled first. The audit is per stage:
    stage 1 on the coarse image, stage 2 on the fine image with the coarse image (bias field) fixed."""
    m = tiny(channels)
    r1 = audit_model(m.stage1, (channels, 4, 4))
    assert r1.violations == 0 and r1.coverage > 0.5
    bias = m.cond(torch.randint(0, 16, (1, channels, 4, 4), dtype=torch.uint8)).detach()
    x = torch.rand(1, channels, 8, 8) * 2 - 1
    r2 = audit(lambda xf: conditional_logits(m.stage2, xf, bias).reshape(1, -1, 8, 8), x, channels, strict=True)
    assert r2.violations == 0 and r2.coverage > 0.3


def test_bias_field_reaches_every_layer_and_position():
    m = tiny(layers=2)
    coarse = torch.randint(0, 16, (1, 1, 4, 4), dtype=torch.uint8)
    bias = m.cond(coarse).detach().requires_grad_(True)
    assert bias.shape == (1, 2 * 4 * m.config.state, 8, 8)
    x = torch.randint(0, 16, (1, 1, 8, 8))
    m.conditional().log_prob(x, bias).sum().backward()
    g = bias.grad.abs().reshape(2, -1, 8, 8).sum(1)  # per layer, per position
    assert bool((g > 0).float().mean((1, 2)).min() > 0.5)  # every layer, most positions (ReLUs zero a few)


def test_loglik_is_the_sum_of_the_stages():
    m = tiny()
    x = torch.randint(0, 16, (3, 1, 8, 8), dtype=torch.uint8)
    with torch.no_grad():
        p1, p2 = m.log_prob_parts(x)
        ll = m(x)
        want = m.stage1(coarsen(x)) + m.conditional()(x, m.cond(coarsen(x)))[0]
    assert p1.shape == (3, 1, 4, 4) and p2.shape == (3, 1, 8, 8)
    assert torch.allclose(ll, want, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_stage2_step_equals_full_given_the_bias(channels):
    m = tiny(channels)
    x = torch.randint(0, 16, (2, channels, 8, 8), dtype=torch.uint8)
    cond = m.conditional()
    with torch.no_grad():
        bias = m.cond(coarsen(x))
        full = cond.log_prob(x, bias).numpy()
    img = ImageSpec(channels, 8, 8, 16)
    runner = TorchStepRunner(cond, img)
    res = step_loop(runner, img, runner.step.states, make_noise(2, img, 0), force=x.numpy(),
                    schedule=StepSchedule(channels, context=("bias",)), context={"bias": bias.numpy()})
    assert np.array_equal(res.images, x.numpy())
    assert float(np.abs(res.logp - full).max()) <= LOGP_BUDGET


def test_registered_and_trains_one_step():
    entry = get_model("multiscale")
    m = entry.build(entry.make_config(channels=1, levels=16, hidden=4, state=2, layers=1, head_hidden=4, up_channels=4))
    x = torch.randint(0, 16, (4, 1, 8, 8), dtype=torch.uint8)
    loss = -m(x).mean()
    loss.backward()
    assert all(p.grad is not None for p in m.parameters())
    assert m.describe()["config"]["hidden"] == 4


@pytest.mark.parametrize("name", [n for n in model_names() if get_model(n).kind == "multiscale"])
def test_every_registered_multiscale_model_is_causal_per_stage_and_steps_like_it_runs(name):
    """Walks the registry's multi-scale entries (autoregressive ones: test_pixelcnn.py; VAEs: test_vae.py)."""
    entry = get_model(name)
    m = entry.build(entry.make_config(channels=1, levels=4)).eval()
    coarse = torch.randint(0, 4, (1, 1, 3, 3), dtype=torch.uint8)
    assert audit_model(m.stage1, (1, 3, 3)).violations == 0
    assert audit_model(GivenCoarse(m, coarse), (1, 6, 6)).violations == 0
    x = torch.randint(0, 4, (2, 1, 6, 6), dtype=torch.uint8)
    with torch.no_grad():
        bias = m.cond(coarsen(x))
        full = m.conditional().log_prob(x, bias).numpy()
    img = ImageSpec(1, 6, 6, 4)
    runner = TorchStepRunner(m.conditional(), img)
    res = step_loop(runner, img, runner.step.states, make_noise(2, img, 0), force=x.numpy(),
                    schedule=StepSchedule(1, context=("bias",)), context={"bias": bias.numpy()})
    assert float(np.abs(res.logp - full).max()) <= LOGP_BUDGET
