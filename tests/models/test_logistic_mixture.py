"""Discretized logistic mixture (PixelCNN++ head in models/logistic.py): normalisation, edge cases, float64
conditionals over all levels and far tails, extreme parameters, per-channel conditionals, sampler."""
import itertools

import numpy as np
import pytest
import torch

from pixelrt.models import logistic
from tests.models.test_logistic import log_mass64, within_budget


def _params(n, channels, mixtures, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, logistic.n_params(channels, mixtures), generator=g) * scale


def _all_values(levels, channels):
    return torch.tensor(list(itertools.product(range(levels), repeat=channels)), dtype=torch.long)


def _joint(v, params, channels, mixtures, levels):
    """Independent joint log p(pixel): torch.logsumexp over components (tests only; never exported)."""
    comp, log_pi = logistic.component_logp(v, params, channels, mixtures, levels)
    return torch.logsumexp(log_pi + comp.sum(-2), dim=-1)


@pytest.mark.parametrize("levels", [2, 3, 17, 256])
def test_grey_probabilities_sum_to_one_at_every_level_count(levels):
    params = _params(6, 1, 4, scale=2.0)
    v = torch.arange(levels).reshape(levels, 1, 1).expand(levels, 6, 1)
    lp = logistic.subpixel_logp(v, params.expand(levels, -1, -1), 1, 4, levels)[..., 0]  # (levels, 6)
    assert torch.isfinite(lp).all()
    assert (lp.double().exp().sum(0) - 1).abs().max() < 1e-4


@pytest.mark.parametrize("levels", [2, 5])
def test_colour_joint_sums_to_one_and_channels_telescope_to_the_joint(levels):
    C, K = 3, 3
    params = _params(4, C, K, scale=1.5)
    v = _all_values(levels, C)  # (L^3, 3)
    n = len(v)
    vv = v[:, None, :].expand(n, 4, C)
    pp = params[None].expand(n, -1, -1)
    sub = logistic.subpixel_logp(vv, pp, C, K, levels)  # (n, 4, C)
    joint = _joint(vv, pp, C, K, levels)
    assert (sub.sum(-1) - joint).abs().max() < 1e-5
    assert (joint.double().exp().sum(0) - 1).abs().max() < 1e-4
    # channel c's conditional is normalised over its values for every earlier (R, G)
    g = sub[..., 1].double().exp().reshape(levels, levels, levels, 4)[:, :, 0]  # (R, G, batch): B fixed at 0
    assert (g.sum(1) - 1).abs().max() < 1e-4


@pytest.mark.parametrize("channels", [1, 3])
def test_every_level_has_finite_log_prob_and_gradient_under_extreme_parameters(channels):
    levels, K = 256, 3
    P = logistic.n_params(channels, K)
    extremes = torch.tensor([-1e4, -50.0, -7.0, 0.0, 7.0, 50.0, 1e4])
    g = torch.Generator().manual_seed(1)
    params = extremes[torch.randint(0, len(extremes), (12, P), generator=g)]
    params = params[:, None, :].expand(12, levels, P).reshape(-1, P).clone().requires_grad_(True)
    v = torch.arange(levels).repeat(12)[:, None].expand(-1, channels)
    lp = logistic.subpixel_logp(v, params, channels, K, levels)
    assert torch.isfinite(lp).all()
    assert (lp <= 1e-5).all()
    lp.sum().backward()
    assert torch.isfinite(params.grad).all()


def test_edge_levels_take_the_tails_and_far_tail_bins_have_their_exact_mass():
    levels = 17
    v = torch.tensor([0, 16, 8])[:, None]
    x = logistic.normalize(v, levels)
    mean = torch.tensor([[0.0], [0.0], [5.0]])
    log_s = torch.tensor([[-1.0], [-1.0], [-7.0]])
    lp = logistic.bin_logp(v, x, mean, log_s, levels)[:, 0]
    half = 1.0 / (levels - 1)
    s = torch.exp(torch.tensor(-1.0))
    assert torch.allclose(lp[0], torch.log(torch.sigmoid((x[0, 0] + half) / s)), atol=1e-6)  # P(X < first edge)
    assert torch.allclose(lp[1], torch.log(1 - torch.sigmoid((x[1, 0] - half) / s)), atol=1e-6)
    # level 8 (x = 0) 5 units below the location at scale e^-7: P ~ e^-5415. The reference's density at the
    # bin centre (its branch below a cdf difference of 1e-5) says -5478, 64 nats off; the mass is exact here.
    ref = log_mass64(levels, v.numpy(), mean.numpy(), log_s.numpy())[:, 0]
    assert within_budget(lp.numpy(), ref)[0].all() and ref[2] < -5000


def logsumexp(a, axis, keepdims=False):
    m = a.max(axis=axis, keepdims=True)
    out = np.log(np.exp(a - m).sum(axis=axis, keepdims=True)) + m
    return out if keepdims else out.squeeze(axis)


def _mixture64(v, params, channels, mixtures, levels):
    """float64 per-channel conditionals log p(v_c | v_<c), (..., C), from the float32 parameters: the same
    parametrisation (coupled means, floored scales, posterior weights), every bin from log_mass64."""
    K, C = mixtures, channels
    p = params.double().numpy()
    lead = p.shape[:-1]
    means = p[..., K:K + C * K].reshape(*lead, C, K)
    log_s = p[..., K + C * K:K + 2 * C * K].reshape(*lead, C, K)
    coeffs = np.tanh(p[..., K + 2 * C * K:].reshape(*lead, logistic.n_coeffs(C), K))
    vv = v.numpy()
    x = logistic.normalize(v, levels).double().numpy()
    acc = p[..., :K] - logsumexp(p[..., :K], axis=-1, keepdims=True)
    prev, out = logsumexp(acc, axis=-1), []
    for c in range(C):
        mean = means[..., c, :] + sum(coeffs[..., c * (c - 1) // 2 + cp, :] * x[..., cp:cp + 1] for cp in range(c))
        acc = acc + log_mass64(levels, vv[..., c:c + 1], mean, log_s[..., c, :])
        cur = logsumexp(acc, axis=-1)
        out.append(cur - prev)
        prev = cur
    return np.stack(out, axis=-1)


@pytest.mark.parametrize("channels,levels", [(1, 2), (1, 17), (1, 256), (3, 2), (3, 5)])
def test_conditionals_match_a_float64_mixture_at_every_level_far_tails_included(channels, levels):
    """Every value (all L^C for colour) under parameters with scales from the floor e^-7 to e^2 (half of them
    all below e^-4) and means beyond [-1, 1]: the per-channel conditionals agree with float64 within
    1e-4 nats + 2e-6 |log p|. The coupled mean is a float32 sum (~1e-7 rounding, times 1/s up to e^7),
    hence the project's per-sub-pixel budget rather than the single bin's 1e-5."""
    K, n = 5, 60
    g = torch.Generator().manual_seed(levels + channels)
    params = torch.randn(n, logistic.n_params(channels, K), generator=g) * 1.5
    scales = slice(K + channels * K, K + 2 * channels * K)
    params[:, scales] = torch.rand(n, channels * K, generator=g) * 9.0 - 7.0
    params[: n // 2, scales] = params[: n // 2, scales] / 3.0 - 14.0 / 3.0  # all narrow: the mixture's tails are far
    v = _all_values(levels, channels)[:, None, :].expand(-1, n, -1)
    pp = params[None].expand(len(v), -1, -1)
    lp = logistic.subpixel_logp(v, pp, channels, K, levels)
    ref = _mixture64(v, pp, channels, K, levels)
    err = np.abs(lp.double().numpy() - ref)
    assert (err <= 1e-4 + 2e-6 * np.abs(ref)).all(), err.max()
    if levels > 2:
        assert (ref < -100).sum() > 50  # far tails were compared


@pytest.mark.parametrize("channels", [1, 3])
def test_forced_sampler_reports_the_conditionals_and_samples_follow_them(channels):
    levels, K, n = 4, 3, 10000
    params = _params(1, channels, K, scale=1.0, seed=3).expand(n, -1)
    g = torch.Generator().manual_seed(4)
    noise = torch.rand(n, channels * (K + 1), generator=g)
    values, logp = logistic.sample(params, noise, torch.full((n, channels), -1), channels, K, levels)
    assert ((values >= 0) & (values < levels)).all()
    assert (logp - logistic.subpixel_logp(values, params, channels, K, levels)).abs().max() < 1e-5
    forced, flogp = logistic.sample(params, noise, values.flip(0), channels, K, levels)
    assert torch.equal(forced, values.flip(0))
    assert (flogp - logistic.subpixel_logp(forced, params, channels, K, levels)).abs().max() < 1e-5
    # empirical joint vs model joint: total variation within sampling error (n = 10000 draws; a wrong sampler is off by > 0.1)
    allv = _all_values(levels, channels)
    model_p = _joint(allv, params[: len(allv)], channels, K, levels).exp()
    codes = (values * (levels ** torch.arange(channels - 1, -1, -1))).sum(-1)
    freq = torch.bincount(codes, minlength=len(allv)).double() / n
    assert 0.5 * (freq - model_p.double()).abs().sum() < 0.05


def test_partly_forced_pixels_sample_the_rest_from_their_conditionals():
    levels, K, n, C = 4, 3, 10000, 3
    params = _params(1, C, K, scale=1.0, seed=5).expand(n, -1)
    noise = torch.rand(n, C * (K + 1), generator=torch.Generator().manual_seed(6))
    force = torch.full((n, C), -1)
    force[:, 0] = 2  # red forced: green and blue must follow p(g, b | r = 2)
    values, _ = logistic.sample(params, noise, force, C, K, levels)
    allv = _all_values(levels, C)
    joint = _joint(allv, params[: len(allv)], C, K, levels).exp().reshape(levels, levels, levels)[2]
    cond = joint / joint.sum()
    freq = torch.bincount(values[:, 1] * levels + values[:, 2], minlength=levels * levels).double() / n
    assert 0.5 * (freq - cond.reshape(-1).double()).abs().sum() < 0.05
