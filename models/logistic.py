"""The discretized logistic likelihood (PixelCNN++, Salimans et al. 2017): one bin log-prob, two heads.

A sub-pixel with integer value v in 0..L-1 is mapped to x = 2v/(L-1) - 1 in [-1, 1]
(the same normalisation as the autoregressive models). A logistic with location ``mean``
and scale s = exp(log_scale) is integrated over the bin [x - 1/(L-1), x + 1/(L-1)]; level
0 takes the whole left tail and level L-1 the right tail, so the L probabilities sum to one
for any number of levels. Log-scales are floored at -7 (the reference's floor).

The bin log-prob (``bin_logp``) is computed one way for both users:
* the VAE's single component per sub-pixel (``discretized_logistic_*``; channels
  independent given the parameters), and
* PixelCNN++'s mixture (``n_params``, ``subpixel_logp``, ``sample``): K components per pixel,
  log-sum-exp over components, R -> G -> B coupling of the means, Gumbel-max sampling.

Numerics. The reference computes log(sigmoid(a) - sigmoid(b)) (a, b: upper and lower bin
edge in scale units) and, where that difference falls below 1e-5, switches to the density
at the bin centre. In float32 the difference cancels in the tails (both sigmoids near 1 or
both near 0): a bin with P ~ 1e-4 loses ~1e-3 of its log-prob, two runtimes disagree by
that much (ORT vs PyTorch: 2.2e-3 nats on a trained digits VAE, 2.7e-3 in the step graph
of the default digits PixelCNN++, whose export failed validation), near the 1e-5 switch
they can take different branches, and below it the centre density can be tens of nats
from the bin's mass when the scale is small. Here every bin uses the exact identity

    sigmoid(a) - sigmoid(b) = sigmoid(a) * sigmoid(-b) * (1 - exp(-(a - b)))       (a > b)
    log P = -softplus(-a) - softplus(b) + log(1 - exp(-d)),   d = a - b = 2 / ((L - 1) s)

whose terms never cancel. The edge bins are the first two terms alone. d depends on the
scale only, and log d is taken as log(2/(L-1)) - log s, so it stays finite however large
s is; log(1 - exp(-d)) is its series log d - d/2 + d^2/24 below d = 0.1 (error < 4e-8;
the float form there would lose 6e-8/d relative). That switch is a property of the scale,
not of the bin, and its two sides agree to < 1e-6 nats, so a runtime that rounds d to
the other side changes nothing measurable. Softplus is written out (relu(a) +
log(1 + exp(-|a|))) and so are the log-sum-exps (max subtracted): the likelihood exports
to Relu/Abs/Exp/Log/ReduceMax/ReduceSum, with no Softplus, Sigmoid or ReduceLogSumExp node
whose implementations differ between runtimes.

What no form of this arithmetic removes: log p's sensitivity to its parameters. Just outside a sharp
component (a bin next to a location on 0 or 255 at s ~ e^-7) d log p / d mean ~ 1/s, so two runtimes
whose networks give means an ulp or two apart differ by up to ~1e-4 nats there on a long-trained
model, while on identical parameters the grey head agrees to ~2e-7 (1 + |log p|) (docs/pixelcnnpp.md,
"Numerical margin of the logistic head"; tests/models/test_logistic_stability.py).

Mixture parameters per pixel, last axis, for C channels and K components:
``[logits (K) | means (C, K) | log_scales (C, K) | coeffs (C(C-1)/2, K)]``; channel c's
mean is ``mu_c + sum_{c' < c} tanh(a_{c,c'}) * x_{c'}``. The full graph and the step graph
call the same functions, so the log-probs the full graph reports and the ones the step
graph samples with come from the same arithmetic.
"""
from __future__ import annotations

import math

import torch

LOG_SCALE_MIN = -7.0   # the reference's floor on log s: keeps 1/s finite
SERIES_BELOW = 0.1     # log(1 - exp(-d)) by its series below this bin width (in scale units)
UNIFORM_EPS = 1e-5     # mixture noise is clamped to [eps, 1 - eps] before log/logit transforms


# -- shared: normalisation and the bin log-prob ------------------------------------------

def softplus(a: torch.Tensor) -> torch.Tensor:
    """log(1 + e^a), stable for any a, from ops every runtime implements alike."""
    return torch.relu(a) + torch.log(1.0 + torch.exp(-torch.abs(a)))


def normalize(v: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer levels 0..L-1 -> bin centres in [-1, 1] (float32)."""
    return v.to(torch.float32) * (2.0 / (levels - 1)) - 1.0


to_unit = normalize  # the VAE's name for it


def log1m_exp_bin(log_scale: torch.Tensor, levels: int) -> torch.Tensor:
    """log(1 - exp(-d)) for the bin width in scale units d = 2 / ((L - 1) s), from log s (floored)."""
    log_d = math.log(2.0 / (levels - 1)) - log_scale   # finite for any s, where 2/((L-1) s) would underflow
    d = torch.exp(log_d)
    return torch.where(d < SERIES_BELOW, log_d - 0.5 * d + d * d / 24.0,
                       torch.log(torch.clamp(1.0 - torch.exp(-d), min=1e-30)))


def bin_logp(v: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
             levels: int) -> torch.Tensor:
    """log P(level v) under discretized logistics, nats, broadcast over v, x, mean and log_scale.

    v: integer levels; x = normalize(v, levels); log_scale already floored at LOG_SCALE_MIN.
    """
    half = 1.0 / (levels - 1)
    centred = x - mean
    inv_s = torch.exp(-log_scale)
    log_cdf_plus = -softplus(-inv_s * (centred + half))   # log sigmoid(a) = log P(X <= upper edge)
    log_sf_min = -softplus(inv_s * (centred - half))      # log sigmoid(-b) = log P(X > lower edge)
    interior = log_cdf_plus + log_sf_min + log1m_exp_bin(log_scale, levels)
    return torch.where(v == 0, log_cdf_plus, torch.where(v == levels - 1, log_sf_min, interior))


# -- one component per sub-pixel (the VAE decoder) -----------------------------------------

def discretized_logistic_logp(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, levels: int) -> torch.Tensor:
    """log P(x) per sub-pixel, nats.

    x: integer levels (any int/uint8 dtype), shape S; mean, log_scale: float, shape S
    (mean on the [-1, 1] scale; log_scale is clamped at LOG_SCALE_MIN). Returns float32 S.
    """
    if levels < 2:
        raise ValueError(f"levels must be at least 2, got {levels}")
    log_scale = torch.clamp(log_scale, min=LOG_SCALE_MIN)
    return bin_logp(x.to(torch.int64), normalize(x, levels), mean, log_scale, levels)


def discretized_logistic_sample(mean: torch.Tensor, log_scale: torch.Tensor, uniform: torch.Tensor,
                                levels: int) -> torch.Tensor:
    """Exact sample by inverse CDF: a continuous logistic draw, rounded to its bin (edge bins take the tails).

    uniform: noise in [0, 1), same shape as mean. Returns int64 levels in 0..L-1.
    """
    u = torch.clamp(uniform, 1e-6, 1.0 - 1e-6)
    scale = torch.exp(torch.clamp(log_scale, min=LOG_SCALE_MIN))
    xc = mean + scale * (torch.log(u) - torch.log(1.0 - u))
    k = torch.round((xc + 1.0) * ((levels - 1) / 2.0))
    return torch.clamp(k, 0, levels - 1).to(torch.int64)


def discretized_logistic_location(mean: torch.Tensor, levels: int) -> torch.Tensor:
    """The location in level units, clipped to 0..L-1 (float): the decoder's "mean" image.
    Rounded, it is the most probable level unless an edge bin's tail mass wins."""
    return torch.clamp((mean + 1.0) * ((levels - 1) / 2.0), 0.0, float(levels - 1))


# -- K-component mixture with coupled channels (PixelCNN++) ---------------------------------

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
    """(..., P) -> logits (..., K), means (..., C, K), log_scales (..., C, K) floored, coeffs (..., C(C-1)/2, K)."""
    K, C = mixtures, channels
    lead = params.shape[:-1]
    logits = params[..., :K]
    means = params[..., K:K + C * K].reshape(*lead, C, K)
    log_scales = params[..., K + C * K:K + 2 * C * K].reshape(*lead, C, K).clamp(min=LOG_SCALE_MIN)
    coeffs = torch.tanh(params[..., K + 2 * C * K:].reshape(*lead, n_coeffs(C), K))
    return logits, means, log_scales, coeffs


def coupled_mean(means: torch.Tensor, coeffs: torch.Tensor, x: torch.Tensor, c: int) -> torch.Tensor:
    """Channel c's component means (..., K) given earlier channels x (..., C) (normalised, true values)."""
    mean = means[..., c, :]
    base = c * (c - 1) // 2  # coefficient rows of channel c: a_{c,0}, ..., a_{c,c-1}
    for cp in range(c):
        mean = mean + coeffs[..., base + cp, :] * x[..., cp:cp + 1]
    return mean


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
    exactly the discretized distribution whose log-prob is returned.
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
