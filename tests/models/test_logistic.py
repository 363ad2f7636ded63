"""The one-component discretized logistic: a distribution over the levels, its edges, its small-probability
branch, and an exact sampler."""
import math

import numpy as np
import pytest
import torch

from pixelrt.models.logistic import LOG_SCALE_MIN, discretized_logistic_logp, discretized_logistic_sample


def _all_levels(levels, mean, log_scale):
    """log P(k) for every level k: (L, n)."""
    n = mean.numel()
    k = torch.arange(levels).reshape(levels, 1).expand(levels, n)
    return discretized_logistic_logp(k, mean.expand(levels, n), log_scale.expand(levels, n), levels)


def _exact(levels, mean, log_scale):
    """float64 reference: the logistic's mass over each bin (edges to +-inf), as a difference of
    CDFs below the location and of survival functions above it, so that neither cancels."""
    k = np.arange(levels)[:, None]
    x = k * (2.0 / (levels - 1)) - 1.0
    s = np.exp(np.maximum(log_scale.double().numpy(), LOG_SCALE_MIN))[None]
    m = mean.double().numpy()[None]
    h = 1.0 / (levels - 1)
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    a, b = (x + h - m) / s, (x - h - m) / s
    a = np.where(k == levels - 1, np.inf, a)
    b = np.where(k == 0, -np.inf, b)
    with np.errstate(over="ignore"):  # exp overflow is sigmoid -> 0, as meant
        return np.where(x > m, sig(-b) - sig(-a), sig(a) - sig(b))


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_probabilities_sum_to_one_and_match_the_exact_mass(levels):
    g = torch.Generator().manual_seed(levels)
    mean = torch.rand(1, 200, generator=g) * 3.0 - 1.5
    log_scale = torch.rand(1, 200, generator=g) * 5 - 5.5  # scales from 0.004 to 0.6
    logp = _all_levels(levels, mean, log_scale)
    assert np.abs(logp.double().exp().numpy().sum(0) - 1.0).max() < 1e-5
    exact = _exact(levels, mean[0], log_scale[0])
    seen = exact > 1e-300  # every bin float64 can represent, tails included
    err = np.abs(logp.numpy()[seen] - np.log(exact[seen]))
    # the project's 1e-4 nats per sub-pixel; float32 arguments (x - mean) / s carry ~1e-7 relative rounding,
    # so far in the tails (|log p| in the hundreds) the budget grows with |log p|. Subtracting sigmoids
    # (PixelCNN++) misses this by ~1e-3 nats at P ~ 1e-4.
    assert (err <= 1e-4 + 1e-6 * np.abs(np.log(exact[seen]))).all(), err.max()
    assert (exact[seen] < 1e-6).sum() > 50 and seen.sum() > 0.9 * exact.size  # far tails were compared


def test_edge_bins_take_the_tails():
    mean, log_scale = torch.tensor([[-3.0, 3.0]]), torch.tensor([[-1.0, -1.0]])
    logp = _all_levels(5, mean, log_scale).exp()
    assert logp[0, 0] > 0.99 and logp[-1, 1] > 0.99  # a location far below 0 / above the top level


def test_far_tails_have_finite_log_probs_and_gradients():
    mean = torch.tensor([0.9, -0.9, 0.0, -1.7], requires_grad=True)
    log_scale = torch.tensor([-6.0, -5.0, -9.0, -2.4], requires_grad=True)  # -9 is clamped at LOG_SCALE_MIN
    x = torch.tensor([3, 12, 5, 2])  # interior levels, many scales away from the location
    logp = discretized_logistic_logp(x, mean, log_scale, 17)
    exact = _exact(17, mean.detach(), log_scale.detach())[x.numpy(), np.arange(4)]
    assert torch.isfinite(logp).all() and (logp < -9).all()
    assert np.allclose(logp.detach().numpy(), np.log(exact), rtol=1e-6, atol=1e-4)
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
