"""The one-component discretized logistic: a distribution over the levels, its edges, its small-probability
branch, and an exact sampler."""
import math

import numpy as np
import pytest
import torch

from pixelrt.models.logistic import (LOG_SCALE_MIN, SMALL_PROB, discretized_logistic_logp,
                                     discretized_logistic_sample)


def _all_levels(levels, mean, log_scale):
    """log P(k) for every level k: (L, n)."""
    n = mean.numel()
    k = torch.arange(levels).reshape(levels, 1).expand(levels, n)
    return discretized_logistic_logp(k, mean.expand(levels, n), log_scale.expand(levels, n), levels)


def _exact(levels, mean, log_scale):
    """float64 reference: CDF differences of the logistic over each bin, edges to +-inf."""
    x = np.arange(levels)[:, None] * (2.0 / (levels - 1)) - 1.0
    s = np.exp(np.maximum(log_scale.double().numpy(), LOG_SCALE_MIN))[None]
    m = mean.double().numpy()[None]
    h = 1.0 / (levels - 1)
    cdf = lambda v: 1.0 / (1.0 + np.exp(-(v - m) / s))  # noqa: E731
    upper = np.where(np.arange(levels)[:, None] == levels - 1, 1.0, cdf(x + h))
    lower = np.where(np.arange(levels)[:, None] == 0, 0.0, cdf(x - h))
    return upper - lower


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_probabilities_sum_to_one_and_match_the_cdf_differences(levels):
    g = torch.Generator().manual_seed(levels)
    mean = torch.rand(1, 200, generator=g) * 2.4 - 1.2
    log_scale = torch.rand(1, 200, generator=g) * 5 - 5.5  # scales from 0.004 to 0.6
    logp = _all_levels(levels, mean, log_scale)
    p = logp.double().exp().numpy()
    assert np.abs(p.sum(0) - 1.0).max() < 5e-5
    exact = _exact(levels, mean[0], log_scale[0])
    big = exact > 10 * SMALL_PROB  # where the exact branch is taken, p is the CDF difference
    # float32: (x - mean) / s carries ~1e-7 / s of rounding, so probabilities are good to ~1e-5 absolutely
    # and small bins lose relative (log) precision; likely bins keep the project's 1e-4 nats budget
    assert np.abs(p[big] - exact[big]).max() < 1e-5
    likely = exact > 1e-2
    assert np.abs(logp.numpy()[likely] - np.log(exact[likely])).max() < 1e-4
    assert big.sum() > 200 and likely.sum() > 200  # the comparisons covered many bins


def test_edge_bins_take_the_tails():
    mean, log_scale = torch.tensor([[-3.0, 3.0]]), torch.tensor([[-1.0, -1.0]])
    logp = _all_levels(5, mean, log_scale).exp()
    assert logp[0, 0] > 0.99 and logp[-1, 1] > 0.99  # a location far below 0 / above the top level


def test_small_probability_branch_is_finite_with_finite_gradients():
    mean = torch.tensor([0.9, -0.9, 0.0], requires_grad=True)
    log_scale = torch.tensor([-6.0, -6.5, -9.0], requires_grad=True)  # -9 is clamped at LOG_SCALE_MIN
    x = torch.tensor([3, 12, 5])  # interior levels, many scales away from the location
    logp = discretized_logistic_logp(x, mean, log_scale, 17)
    assert torch.isfinite(logp).all() and (logp < math.log(SMALL_PROB)).all()
    logp.sum().backward()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_scale.grad).all()


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
