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


def inverse_cdf_sample(logp: torch.Tensor, uniform: torch.Tensor, count: str = "sum") -> torch.Tensor:
    """Sample from a categorical over the last axis by inverse CDF.

    logp: (..., L) log-probabilities; uniform: (...) noise in [0, 1).
    Returns int64 (...): the smallest k with cdf[k] > u * cdf[-1].
    One uniform per sub-pixel keeps the host's noise array the size of the image,
    and the same noise gives the same sample on every runtime.

    ``count="levels-first"`` (2-D logp, the wavefront graph's wide batches, docs/architecture.md): the
    same sums in the same order with the levels as the first axis, where ORT's CumSum adds whole rows
    (21 vs 379 us for 448 x 256 here; bitwise the same CDF), and the levels at or below the threshold
    counted by a MatMul with a ones row (exact: at most 256 ones in float32) instead of an int64
    ReduceSum, which ORT runs 7x slower at that batch. The same integers as the default.
    """
    if count == "levels-first":
        cdf = torch.cumsum(logp.exp().t(), dim=0)  # (L, B)
        threshold = uniform.unsqueeze(0) * cdf[-1:]
        below = (cdf <= threshold).to(torch.float32)
        index = (torch.ones(1, logp.shape[-1], dtype=torch.float32) @ below).squeeze(0).to(torch.int64)
        return index.clamp(max=logp.shape[-1] - 1)
    cdf = torch.cumsum(logp.exp(), dim=-1)
    threshold = uniform.unsqueeze(-1) * cdf[..., -1:]
    index = (cdf <= threshold).sum(dim=-1)
    return index.clamp(max=logp.shape[-1] - 1)


def gather_logp(logp: torch.Tensor, value: torch.Tensor, dim: int) -> torch.Tensor:
    """Pick log p(value) along ``dim``; ``value`` has logp's shape without ``dim``."""
    return logp.gather(dim, value.unsqueeze(dim)).squeeze(dim)
