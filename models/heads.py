"""Likelihood heads: the categorical (levels-way softmax) conditional and its sampler.

Both the full path and the step path call these functions, so the log-probs
the full graph reports and the ones the step graph samples with come from the
same arithmetic. The log-softmax subtracts the max explicitly: TensorRT's
ReduceLogSumExp is known to overflow on large finite inputs, and a written-out
form exports to plain ReduceMax/Exp/ReduceSum/Log that every runtime runs alike.
"""
from __future__ import annotations

import torch


def log_softmax(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """log softmax with explicit max subtraction (exports without LogSoftmax/ReduceLogSumExp)."""
    shifted = logits - logits.amax(dim=dim, keepdim=True).detach()
    return shifted - shifted.exp().sum(dim=dim, keepdim=True).log()


def inverse_cdf_sample(logp: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Sample from a categorical over the last axis by inverse CDF.

    logp: (..., L) log-probabilities; uniform: (...) noise in [0, 1).
    Returns int64 (...): the smallest k with cdf[k] > u * cdf[-1].
    One uniform per sub-pixel keeps the host's noise array the size of the image,
    and the same noise gives the same sample on every runtime. (The VAE decoder's sampler; the
    autoregressive step graphs sample with ``sample_categorical``.)
    """
    cdf = torch.cumsum(logp.exp(), dim=-1)
    threshold = uniform.unsqueeze(-1) * cdf[..., -1:]
    index = (cdf <= threshold).sum(dim=-1)
    return index.clamp(max=logp.shape[-1] - 1)


def sample_categorical(logits: torch.Tensor, uniform: torch.Tensor, force: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A sub-pixel's value and its log p from (B, L) logits: what every categorical step graph, the
    wavefront graph and the naive oracle sample with. ``uniform`` (B,) is the noise in [0, 1), ``force``
    (B,) >= 0 picks that value instead. Returns value (B,) int64, log p(value) (B,) float32 and the
    value as a (B, 1) column. The smallest k with cdf[k] > u * cdf[-1], as ``inverse_cdf_sample``.

    Written for what ONNX Runtime runs fast (docs/architecture.md, "Round 4"):

    * no normalising first: the CDF is summed over ``exp(logits - max)`` and the threshold is ``u``
      times its own last entry, so the log-softmax's second Exp, its ReduceSum and its full-width Sub
      are not needed; log p(value) is the picked shifted logit minus the log of that total. The full
      graph's log-likelihood stays ``log_softmax``: the two differ by the rounding of one sum;
    * levels first: the CDF is summed over (L, B), where ORT's CumSum adds whole rows (21 vs 379 us
      at 448 x 256; 53 us at batch 64 before), bitwise the same sums in the same order;
    * the levels at or below the threshold are counted by a MatMul with a ones row (exact: at most 256
      ones in float32), not an int64 ReduceSum over the levels (39 us at batch 64) nor a float one (11-63
      us: ORT reduces a leading axis slowly). The precision passes treat such a MatMul as a sum, not a
      layer (``calibration.graphs.layer_gemms``).
    """
    levels = logits.shape[-1]
    shifted = logits - logits.amax(dim=-1, keepdim=True).detach()
    cdf = torch.cumsum(shifted.exp().t(), dim=0)  # (L, B)
    total = cdf[-1:]  # (1, B)
    below = (cdf <= uniform * total).to(torch.float32)  # uniform (B,) broadcasts as a row
    index = (torch.ones(1, levels, dtype=torch.float32) @ below).to(torch.int64).clamp(max=levels - 1)  # (1, B)
    row = index if force is None else torch.where(force >= 0, force, index)  # force (B,) as a row too
    column = row.reshape(-1, 1)
    logp = (shifted.gather(1, column) - total.reshape(-1, 1).log()).squeeze(1)
    return row.reshape(-1), logp, column


def gather_logp(logp: torch.Tensor, value: torch.Tensor, dim: int) -> torch.Tensor:
    """Pick log p(value) along ``dim``; ``value`` has logp's shape without ``dim``."""
    return logp.gather(dim, value.unsqueeze(dim)).squeeze(dim)
