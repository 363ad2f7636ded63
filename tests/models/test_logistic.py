"""The discretized logistic (models/logistic.py): the one bin log-prob against a float64 reference over all
levels and far tails, its edges and series switch, huge scales, and the single-component sampler (VAE).
The mixture built on the same bin log-prob is tested in test_logistic_mixture.py."""
import math

import numpy as np
import pytest
import torch

from pixelrt.models.logistic import (LOG_SCALE_MIN, SERIES_BELOW, discretized_logistic_logp,
                                     discretized_logistic_sample, log1m_exp_bin, normalize)


def _all_levels(levels, mean, log_scale):
    """log P(k) for every level k: (L, n)."""
    n = mean.numel()
    k = torch.arange(levels).reshape(levels, 1).expand(levels, n)
    return discretized_logistic_logp(k, mean.expand(levels, n), log_scale.expand(levels, n), levels)


def _log_sigmoid(v):
    return -np.logaddexp(0.0, -v)


def log_mass64(levels, v, mean, log_scale):
    """float64 reference log P(level v), broadcast over v (int), mean and log_scale (floored here).

    A different formulation from the code's: the log of a difference of log-CDFs below the location and
    of log-survivals above it (log(-expm1(.)) keeps it accurate however small the bin or its mass), so
    far tails (log P in the thousands) are compared too. Bin centres are the model's float32 values:
    their rounding (up to 6e-8) times 1/s (up to e^7) would be ~1e-4 nats of input, not of arithmetic.
    """
    v = np.asarray(v)
    x = normalize(torch.from_numpy(v), levels).double().numpy()
    s = np.exp(np.maximum(np.asarray(log_scale, dtype=np.float64), LOG_SCALE_MIN))
    h = 1.0 / (levels - 1)
    m = np.asarray(mean, dtype=np.float64)
    a = np.where(v == levels - 1, np.inf, (x + h - m) / s)
    b = np.where(v == 0, -np.inf, (x - h - m) / s)
    with np.errstate(divide="ignore", invalid="ignore"):
        above = _log_sigmoid(-b) + np.log(-np.expm1(_log_sigmoid(-a) - _log_sigmoid(-b)))
        below = _log_sigmoid(a) + np.log(-np.expm1(_log_sigmoid(b) - _log_sigmoid(a)))
    return np.where(x > m, above, below)


def within_budget(logp, ref):
    """|err| <= 1e-5 + 2e-6 |log p|: float32 arguments (x - mean) / s carry ~1e-7 relative rounding, so the
    budget grows with |log p| in the far tails. The reference's form (sigmoid(a) - sigmoid(b) with a
    density-at-centre branch below 1e-5) misses this by 1e-3 nats at P ~ 1e-4 and by 64 nats far out."""
    err = np.abs(np.asarray(logp, dtype=np.float64) - ref)
    return err <= 1e-5 + 2e-6 * np.abs(ref), err


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_every_level_matches_the_float64_mass_far_tails_included(levels):
    mean, log_scale = np.meshgrid(np.linspace(-1.6, 1.6, 33, dtype=np.float32),
                                  np.linspace(-8.0, 3.0, 23, dtype=np.float32))  # -8 is below the floor
    mean, log_scale = torch.from_numpy(mean.reshape(1, -1)), torch.from_numpy(log_scale.reshape(1, -1))
    logp = _all_levels(levels, mean, log_scale)
    # float32 bin centres move each edge by up to 6e-8: bins overlap or gap by that times the density, at most
    # 1/(4s) near the location (3e-5 at the floor s = e^-7); wide bins sum to one within 1e-5
    s = np.exp(np.maximum(log_scale.numpy()[0], LOG_SCALE_MIN))
    assert (np.abs(logp.double().exp().numpy().sum(0) - 1.0) < 1e-5 + 1.2e-7 / (4 * s)).all()
    ref = log_mass64(levels, np.arange(levels)[:, None], mean.numpy(), log_scale.numpy())
    assert np.isfinite(ref).all()
    ok, err = within_budget(logp.numpy(), ref)
    assert ok.all(), (err.max(), ref[~ok][:5])
    if levels > 2:
        assert (ref < -100).sum() > 500 and ref.min() < -1000  # far tails were compared


def test_edge_bins_take_the_tails():
    mean, log_scale = torch.tensor([[-3.0, 3.0]]), torch.tensor([[-1.0, -1.0]])
    logp = _all_levels(5, mean, log_scale).exp()
    assert logp[0, 0] > 0.99 and logp[-1, 1] > 0.99  # a location far below 0 / above the top level


def test_far_tails_have_finite_log_probs_and_gradients():
    mean = torch.tensor([0.9, -0.9, 0.0, -1.7], requires_grad=True)
    log_scale = torch.tensor([-6.0, -5.0, -9.0, -2.4], requires_grad=True)  # -9 is clamped at LOG_SCALE_MIN
    x = torch.tensor([3, 12, 5, 2])  # interior levels, many scales away from the location
    logp = discretized_logistic_logp(x, mean, log_scale, 17)
    ref = log_mass64(17, x.numpy(), mean.detach().numpy(), log_scale.detach().numpy())
    assert torch.isfinite(logp).all() and (logp < -9).all()
    assert within_budget(logp.detach().numpy(), ref)[0].all()
    logp.sum().backward()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_scale.grad).all()


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_huge_scales_keep_a_finite_exact_log_prob(levels):
    """s = e^50 .. e^1e4: 2/((L-1) s) underflows in float32, log d = log(2/(L-1)) - log s does not;
    every bin then holds the logistic's peak density 1/(4 s) times its width."""
    log_scale = torch.tensor([50.0, 1e3, 1e4], requires_grad=True)
    mean = torch.zeros(3, requires_grad=True)
    v = torch.full((3,), levels // 2 if levels > 2 else 1)
    logp = discretized_logistic_logp(v, mean, log_scale, levels)
    if levels > 2:
        expected = math.log(2.0 / (levels - 1)) - log_scale.detach().double() - math.log(4.0)
        assert torch.allclose(logp.double(), expected, rtol=1e-6)
    else:
        assert torch.allclose(logp, torch.full((3,), -math.log(2.0)))  # two half-lines
    logp.sum().backward()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_scale.grad).all()


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_series_switch_is_continuous(levels):
    """log(1 - exp(-d)) by series below d = 0.1 and directly above: both sides within 1e-6 of float64, so a
    runtime that rounds d to the other side of the switch changes nothing measurable."""
    at = math.log(2.0 / (levels - 1)) - math.log(SERIES_BELOW)  # the log-scale where d = 0.1
    log_scale = torch.tensor(at + np.linspace(-1e-5, 1e-5, 201), dtype=torch.float32)
    d = np.exp(math.log(2.0 / (levels - 1)) - log_scale.double().numpy())
    assert (d < SERIES_BELOW).any() and (d >= SERIES_BELOW).any()
    assert np.abs(log1m_exp_bin(log_scale, levels).double().numpy() - np.log(-np.expm1(-d))).max() < 1e-6


@pytest.mark.parametrize("channels", [1, 3])
def test_inverse_cdf_sampler_draws_from_the_distribution(channels):
    levels, n = 5, 40_000
    g = torch.Generator().manual_seed(channels)
    mean = torch.tensor([-0.3, 0.2, 0.9][:channels]).reshape(1, channels, 1, 1).expand(n, channels, 1, 1)
    log_scale = torch.tensor([-1.0, -2.0, -0.5][:channels]).reshape(1, channels, 1, 1).expand(n, channels, 1, 1)
    u = torch.rand(n, channels, 1, 1, generator=g)
    k = discretized_logistic_sample(mean, log_scale, u, levels)
    assert k.dtype == torch.int64 and k.min() >= 0 and k.max() <= levels - 1
    for c in range(channels):
        freq = np.bincount(k[:, c].flatten().numpy(), minlength=levels) / n
        p = _all_levels(levels, mean[:1, c].reshape(1, 1), log_scale[:1, c].reshape(1, 1)).exp().numpy()[:, 0]
        assert np.abs(freq - p).max() < 4 * math.sqrt(0.25 / n)  # 4 standard errors at worst
