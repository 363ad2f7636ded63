"""The categorical step sampler (``heads.sample_categorical``) against its definition: the smallest k with
cdf[k] > u * cdf[-1] of the normalised distribution, and log p(value) as the full graph's log-softmax."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pixelrt.models.heads import gather_logp, inverse_cdf_sample, log_softmax, sample_categorical


def _logits(batch: int, levels: int, spread: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, levels, generator=g) * spread


@pytest.mark.parametrize("spread", [0.1, 3.0, 40.0])
def test_sample_categorical_picks_the_inverse_cdf_level_and_the_log_softmax_logp(spread):
    B, L = 4096, 256
    logits = _logits(B, L, spread)
    u = torch.rand(B, generator=torch.Generator().manual_seed(1))
    value, logp, column = sample_categorical(logits, u)
    assert value.dtype == torch.int64 and column.shape == (B, 1) and torch.equal(column[:, 0], value)
    p = torch.softmax(logits.double(), dim=-1)
    cdf = torch.cumsum(p, dim=-1)
    before = cdf.gather(1, (value - 1).clamp(min=0)[:, None])[:, 0]
    below = torch.where(value > 0, before, torch.zeros(B, dtype=torch.float64))
    at = cdf.gather(1, value[:, None])[:, 0]
    # the definition, up to float32 rounding of the CDF: cdf[v - 1] <= u < cdf[v]
    assert bool(((below <= u.double() + 1e-5) & (u.double() < at + 1e-5)).all())
    assert (value == inverse_cdf_sample(log_softmax(logits, -1), u)).float().mean() > 0.999
    want = gather_logp(log_softmax(logits, -1), value, -1)
    assert float((logp - want).abs().max()) < 1e-5 * max(1.0, spread)
    assert bool(torch.isfinite(logp).all())


def test_sample_categorical_forces_values_and_stays_finite_at_extremes():
    B, L = 6, 256
    logits = torch.zeros(B, L)
    logits[0, 7] = 1e4  # one level carries everything: exp of the rest underflows to 0
    logits[1] = -1e4
    logits[1, 200] = 0.0
    u = torch.tensor([0.0, 0.999999, 0.5, 0.0, 0.9999999, 0.25])
    force = torch.tensor([-1, -1, -1, 3, -1, 255])
    value, logp, _ = sample_categorical(logits, u, force)
    assert value.tolist()[:2] == [7, 200]
    assert value[3] == 3 and value[5] == 255  # forced
    assert value[2] == 128 and value[4] == 255  # uniform logits: floor(u * L), clamped to the last level
    assert bool(torch.isfinite(logp).all())
    assert abs(float(logp[0])) < 1e-6 and abs(float(logp[1])) < 1e-6
    assert float(logp[3]) == pytest.approx(-math.log(L), abs=1e-5)
    assert np.allclose(logp[[2, 4, 5]].numpy(), -math.log(L), atol=1e-5)
