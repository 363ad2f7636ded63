"""The bundle's reference batch, measured again on this runtime, against what PyTorch measured at export.

A graph swapped for another model's with the same shapes passes every structural check; its
likelihood of the stored reference images does not. A drift beyond the precision's budget is a
:class:`ParityError` (exit 1), and a non-finite drift is a miss, never a pass. Torch-free.
"""
from __future__ import annotations

import numpy as np

from pixelrt.errors import ParityError

FP32_BPD_BUDGET = 1e-5       # the foundation's FP32 budget, |d bits/dim| per image
FP16_BPD_BUDGET = 1e-3       # |d bits/dim| of FP16 vs FP32
INT8_RELATIVE_BUDGET = 0.02  # INT8 bits/dim increase <= 2% of the FP32 bits/dim


def bpd_budget(precision: str, fp32_bpd: float) -> float:
    """Largest allowed |bits/dim - FP32 bits/dim| for a bundle of ``precision``."""
    if precision == "fp32":
        return FP32_BPD_BUDGET
    if precision == "fp16":
        return FP16_BPD_BUDGET
    if precision == "int8":
        return INT8_RELATIVE_BUDGET * abs(fp32_bpd)
    raise ValueError(f"unknown precision {precision!r}")


def step_vs_full_budget(precision: str, fp32_bpd: float) -> float:
    """Largest allowed per-image |summed step log p - full graph| in bits/dim, same precision.

    FP32 keeps the foundation's 1e-5. A reduced-precision step graph is a different rounding
    of the same network (matmuls on cached rows instead of convolutions), so each of the two
    graphs may sit up to one precision budget from FP32 in opposite directions: by the
    triangle inequality they may differ by twice the budget, and by no more without one of
    them missing its own budget (docs/precision.md)."""
    return bpd_budget(precision, fp32_bpd) * (1 if precision == "fp32" else 2)


def within(value: float, budget: float) -> bool:
    """``value <= budget`` that fails closed: NaN is a miss."""
    return bool(value <= budget)


def drift_budget(bundle) -> float:
    ref = bundle.manifest.reference.bits_per_dim
    return bpd_budget(bundle.precision, float(np.mean(ref)))


def check_reference(bundle, loglik_now: np.ndarray, loglik_export: np.ndarray) -> float:
    """|d bits/dim| of the reference batch now vs at export (per image for FP32, the mean for FP16 / INT8,
    whose reference is the FP32 model's); ParityError beyond the budget."""
    now, then = bundle.image.bits_per_dim(loglik_now), bundle.image.bits_per_dim(loglik_export)
    drift = float(np.abs(now - then).max()) if bundle.precision == "fp32" else float(abs(now.mean() - then.mean()))
    budget = drift_budget(bundle)
    if not within(drift, budget):
        raise ParityError(f"{bundle.root}: the graphs give the bundle's reference batch {drift:.2e} bits/dim away from "
                          f"what was measured at export (budget {budget:.0e} for {bundle.precision}): this bundle's "
                          "graphs are not the model its manifest describes, or this runtime computes it differently; "
                          "re-export the bundle from its checkpoint and do not use this copy")
    return drift
