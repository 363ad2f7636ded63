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


def sample_categorical(logits: torch.Tensor, uniform: torch.Tensor, force: torch.Tensor | None = None,
                       count: str = "sum") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A sub-pixel's value and its log p from (B, L) logits: what every categorical step graph (and the
    naive oracle) samples with. Returns value (B,) int64, log p(value) (B,) float32 and value (B, 1).

    The sampler of ``inverse_cdf_sample`` without normalising first: the CDF is summed over
    ``exp(logits - max)`` and the threshold is ``u`` times its own last entry, so the log-softmax's second
    Exp, its ReduceSum and its full-width Sub are not needed; log p(value) is the picked shifted logit minus
    the log of that total (docs/architecture.md, "Round 4"). The full graph's log-likelihood stays
    ``log_softmax``: the two differ by the rounding of one sum (a sequential cumsum vs a ReduceSum).
    ``force`` >= 0 picks that value instead of sampling; ``count`` as in ``inverse_cdf_sample``.
    """
    levels = logits.shape[-1]
    shifted = logits - logits.amax(dim=-1, keepdim=True).detach()
    e = shifted.exp()
    if count == "levels-first":
        cdf = torch.cumsum(e.t(), dim=0)  # (L, B): ORT adds whole rows
        total = cdf[-1:]  # (1, B)
        below = (cdf <= uniform.unsqueeze(0) * total).to(torch.float32)
        index = (torch.ones(1, levels, dtype=torch.float32) @ below).reshape(-1, 1).to(torch.int64)  # (B, 1)
        total = total.reshape(-1, 1)
    else:
        cdf = torch.cumsum(e, dim=-1)
        total = cdf[:, -1:]  # (B, 1)
        index = (cdf <= uniform.unsqueeze(-1) * total).sum(dim=-1, keepdim=True)
    index = index.clamp(max=levels - 1)
    column = index if force is None else torch.where(force.unsqueeze(-1) >= 0, force.unsqueeze(-1), index)
    logp = (shifted.gather(1, column) - total.log()).squeeze(1)
    return column.squeeze(1), logp, column


def gather_logp(logp: torch.Tensor, value: torch.Tensor, dim: int) -> torch.Tensor:
    """Pick log p(value) along ``dim``; ``value`` has logp's shape without ``dim``."""
    return logp.gather(dim, value.unsqueeze(dim)).squeeze(dim)
