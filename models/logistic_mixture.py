"""Discretized logistic mixture likelihood (PixelCNN++, Salimans et al. 2017), numerically stable.

Both the full graph and the step graph call these functions, so the log-probs
the full graph reports and the ones the step graph samples with come from the
same arithmetic. Everything is written with plain ops (explicit max
subtraction, softplus, sigmoid, where): no LogSumExp/LogSoftmax node reaches
an exported graph.

Parameters per pixel, last axis, for C channels and K mixture components:
``[logits (K) | means (C, K) | log_scales (C, K) | coeffs (C(C-1)/2, K)]``.
Channel c's mean is coupled to the earlier channels of the same pixel:
``mean_c = mu_c + sum_{c' < c} tanh(a_{c,c'}) * x_{c'}`` (R -> G -> B for colour).

Values are integer levels 0..L-1, normalised to x = v * 2/(L-1) - 1 in [-1, 1];
the bin of a level is x +- 1/(L-1). The reference's edge cases are kept: level
0 takes the whole left tail, level L-1 the right tail, and a bin whose
probability underflows (cdf difference < 1e-5) uses the density at its centre
times the bin width, so every level has a finite log-prob and gradient for any
logits and scales.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MIN_LOG_SCALE = -7.0     # the reference's floor on log scales
SMALL_PROB = 1e-5        # below this cdf difference the bin-centre density is used
UNIFORM_EPS = 1e-5       # noise is clamped to [eps, 1 - eps] before log/logit transforms


def n_coeffs(channels: int) -> int:
    return channels * (channels - 1) // 2


def n_params(channels: int, mixtures: int) -> int:
    """Parameters per pixel: K logits, C*K means, C*K log-scales, C(C-1)/2*K coupling coefficients."""
    return mixtures * (1 + 2 * channels + n_coeffs(channels))


def logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """log sum exp with explicit max subtraction (exports to ReduceMax/Exp/ReduceSum/Log)."""
    m = x.amax(dim=dim, keepdim=True).detach()
    return (x - m).exp().sum(dim=dim).log() + m.squeeze(dim)


def split_params(params: torch.Tensor, channels: int, mixtures: int):
    """(..., P) -> logits (..., K), means (..., C, K), log_scales (..., C, K), coeffs (..., C(C-1)/2, K)."""
    K, C = mixtures, channels
    lead = params.shape[:-1]
    logits = params[..., :K]
    means = params[..., K:K + C * K].reshape(*lead, C, K)
    log_scales = params[..., K + C * K:K + 2 * C * K].reshape(*lead, C, K).clamp(min=MIN_LOG_SCALE)
    coeffs = torch.tanh(params[..., K + 2 * C * K:].reshape(*lead, n_coeffs(C), K))
    return logits, means, log_scales, coeffs


def coupled_mean(means: torch.Tensor, coeffs: torch.Tensor, x: torch.Tensor, c: int) -> torch.Tensor:
    """Channel c's component means (..., K) given earlier channels x (..., C) (normalised, true values)."""
    mean = means[..., c, :]
    base = c * (c - 1) // 2  # coefficient rows of channel c: a_{c,0}, ..., a_{c,c-1}
    for cp in range(c):
        mean = mean + coeffs[..., base + cp, :] * x[..., cp:cp + 1]
    return mean


def bin_logp(v: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
             levels: int) -> torch.Tensor:
    """log P(level v) under discretised logistics (..., K); v int (...,1)-broadcastable, x its normalised value."""
    half = 1.0 / (levels - 1)
    centred = x - mean
    inv_s = torch.exp(-log_scale)
    plus_in = inv_s * (centred + half)
    min_in = inv_s * (centred - half)
    log_cdf_plus = plus_in - F.softplus(plus_in)          # log sigmoid(plus_in): level 0 takes the left tail
    log_one_minus_cdf_min = -F.softplus(min_in)           # log(1 - sigmoid(min_in)): top level takes the right tail
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    mid_in = inv_s * centred
    log_pdf_mid = mid_in - log_scale - 2.0 * F.softplus(mid_in)  # log density at the bin centre
    interior = torch.where(cdf_delta > SMALL_PROB, torch.log(cdf_delta.clamp(min=1e-12)),
                           log_pdf_mid - math.log((levels - 1) / 2.0))  # density times bin width 2/(L-1)
    return torch.where(v == 0, log_cdf_plus, torch.where(v == levels - 1, log_one_minus_cdf_min, interior))


def normalize(v: torch.Tensor, levels: int) -> torch.Tensor:
    return v.to(torch.float32) * (2.0 / (levels - 1)) - 1.0


def component_logp(v: torch.Tensor, params: torch.Tensor, channels: int, mixtures: int,
                   levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel and component log P(v_c | component, v_<c): (..., C, K); and log mixture weights (..., K).

    v: (..., C) integer levels; params: (..., P).
    """
    logits, means, log_scales, coeffs = split_params(params, channels, mixtures)
    x = normalize(v, levels)
    per = [bin_logp(v[..., c:c + 1], x[..., c:c + 1], coupled_mean(means, coeffs, x, c), log_scales[..., c, :], levels)
           for c in range(channels)]
    log_pi = logits - logsumexp(logits, dim=-1).unsqueeze(-1)
    return torch.stack(per, dim=-2), log_pi


def subpixel_logp(v: torch.Tensor, params: torch.Tensor, channels: int, mixtures: int, levels: int) -> torch.Tensor:
    """log p(v_c | earlier pixels, v_<c of this pixel) for every channel: (..., C), nats.

    Channel c's conditional is a mixture whose weights are the posterior over components given
    v_<c: log p(v_c | v_<c) = A_c - A_{c-1} with A_c = logsumexp_k(log pi_k + sum_{c'<=c} log p_k(v_c')).
    The channels telescope to A_{C-1} - A_{-1}, the pixel's joint log-probability.
    """
    comp, log_pi = component_logp(v, params, channels, mixtures, levels)
    acc = log_pi
    prev = logsumexp(acc, dim=-1)
    out = []
    for c in range(channels):
        acc = acc + comp[..., c, :]
        cur = logsumexp(acc, dim=-1)
        out.append(cur - prev)
        prev = cur
    return torch.stack(out, dim=-1)


def sample(params: torch.Tensor, noise: torch.Tensor, force: torch.Tensor, channels: int, mixtures: int,
           levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample (or teacher-force) a whole pixel from host noise: values (B, C) int64, log-probs (B, C).

    params (B, P); noise (B, C * (K + 1)) uniform [0, 1): per channel K uniforms for a Gumbel-max
    choice of component and one for the logistic; force (B, C), -1 = sample.
    Channel c picks its component from the posterior given v_<c (the prior for c = 0), so forcing
    some channels still samples the others from their exact conditionals; the logistic sample
    y = mean + s * logit(u) is clamped to [-1, 1] and rounded to the nearest level, which is
    exactly the discretised distribution whose log-prob is returned.
    """
    K, C = mixtures, channels
    logits, means, log_scales, coeffs = split_params(params, C, K)
    u = noise.clamp(UNIFORM_EPS, 1.0 - UNIFORM_EPS).reshape(noise.shape[0], C, K + 1)
    log_pi = logits - logsumexp(logits, dim=-1).unsqueeze(-1)
    acc = log_pi
    prev = logsumexp(acc, dim=-1)
    scale = (levels - 1) / 2.0
    values, xs, logps = [], [], []
    ids = torch.arange(K, device=params.device)
    for c in range(C):
        x_prev = torch.stack(xs, dim=-1) if xs else torch.zeros_like(params[:, :1])
        mean = coupled_mean(means, coeffs, x_prev, c)  # (B, K)
        gumbel = -torch.log(-torch.log(u[:, c, :K]))
        k = (acc - acc.amax(dim=-1, keepdim=True) + gumbel).argmax(dim=-1, keepdim=True)  # (B, 1)
        onehot = (ids == k).to(params.dtype)
        m = (mean * onehot).sum(-1)
        s = (log_scales[:, c, :] * onehot).sum(-1)
        uc = u[:, c, K]
        y = m + torch.exp(s) * (torch.log(uc) - torch.log1p(-uc))
        sampled = torch.round((y.clamp(-1.0, 1.0) + 1.0) * scale).to(torch.int64).clamp(0, levels - 1)
        v = torch.where(force[:, c] >= 0, force[:, c], sampled)
        x = normalize(v, levels)
        lp = bin_logp(v.unsqueeze(-1), x.unsqueeze(-1), mean, log_scales[:, c, :], levels)  # (B, K)
        acc = acc + lp
        cur = logsumexp(acc, dim=-1)
        logps.append(cur - prev)
        prev = cur
        values.append(v)
        xs.append(x)
    return torch.stack(values, dim=-1), torch.stack(logps, dim=-1)
