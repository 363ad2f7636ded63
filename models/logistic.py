"""The discretized logistic likelihood (PixelCNN++, Salimans et al. 2017) with one component.

A sub-pixel with integer value k in 0..L-1 is mapped to x = 2k/(L-1) - 1 in [-1, 1]
(the same normalisation as the autoregressive models). The continuous logistic with
location ``mean`` and scale ``exp(log_scale)`` is integrated over the bin
[x - 1/(L-1), x + 1/(L-1)]; the first bin extends to -inf and the last to +inf, so the
L probabilities sum to one for any number of levels.

Numerics, as in PixelCNN++:
* log sigma(a) = a - softplus(a) and log(1 - sigma(b)) = -softplus(b) for the two edge bins;
* where the bin's probability underflows (cdf difference < 1e-5) the log density at the
  bin centre plus log(bin width) replaces log(cdf_plus - cdf_min);
* softplus is written out (relu(a) + log(1 + exp(-|a|))) so the exported graph has only
  Relu/Abs/Exp/Log, no Softplus or ReduceLogSumExp for a runtime to disagree on.

One component needs no log-sum-exp; the mixture version (PixelCNN++'s) lives elsewhere.
Channels are independent given the parameters (a VAE decoder's factorised p(x|z)).
"""
from __future__ import annotations

import math

import torch

LOG_SCALE_MIN = -7.0   # PixelCNN++'s floor on log s: keeps 1/s finite
SMALL_PROB = 1e-5      # below this cdf difference the density-at-centre branch is used


def softplus(a: torch.Tensor) -> torch.Tensor:
    """log(1 + e^a), stable for any a, from ops every runtime implements alike."""
    return torch.relu(a) + torch.log(1.0 + torch.exp(-torch.abs(a)))


def to_unit(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer levels 0..L-1 -> bin centres in [-1, 1]."""
    return x.to(torch.float32) * (2.0 / (levels - 1)) - 1.0


def discretized_logistic_logp(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, levels: int) -> torch.Tensor:
    """log P(x) per sub-pixel, nats.

    x: integer levels (any int/uint8 dtype), shape S; mean, log_scale: float, shape S
    (mean on the [-1, 1] scale; log_scale is clamped at LOG_SCALE_MIN). Returns float32 S.
    """
    if levels < 2:
        raise ValueError(f"levels must be at least 2, got {levels}")
    half_bin = 1.0 / (levels - 1)
    log_scale = torch.clamp(log_scale, min=LOG_SCALE_MIN)
    centered = to_unit(x, levels) - mean
    inv_s = torch.exp(-log_scale)
    plus_in = inv_s * (centered + half_bin)
    min_in = inv_s * (centered - half_bin)
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    log_cdf_plus = plus_in - softplus(plus_in)          # log P(X <= upper edge): the bottom bin
    log_one_minus_cdf_min = -softplus(min_in)           # log P(X > lower edge): the top bin
    mid_in = inv_s * centered
    log_pdf_mid = mid_in - log_scale - 2.0 * softplus(mid_in)  # log density at the bin centre
    interior = torch.where(cdf_delta > SMALL_PROB,
                           torch.log(torch.clamp(cdf_delta, min=1e-12)),
                           log_pdf_mid + math.log(2.0 * half_bin))
    xi = x.to(torch.int64)
    return torch.where(xi == 0, log_cdf_plus, torch.where(xi == levels - 1, log_one_minus_cdf_min, interior))


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
