"""Export self-validation: ONNX Runtime against PyTorch, at a batch size the graphs were not traced with.

A miss beyond budget is an error (Optimum only warns; pixelrt refuses to write
the bundle). Budgets are FP32 budgets: bits/dim per image and log p per
sub-pixel.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pixelrt.errors import ParityError, PixelrtError
from pixelrt.bundle import Bundle, ImageSpec
from pixelrt.runtime.ort_backend import OrtBackend

BPD_BUDGET = 1e-5   # |delta bits/dim| per image
LOGP_BUDGET = 1e-4  # |delta log p| per sub-pixel, nats


def check_reference_images(image: ImageSpec, reference_x: np.ndarray) -> np.ndarray:
    """The reference batch every exporter stores and validates with: non-empty, of the model's shape and levels."""
    if not isinstance(reference_x, np.ndarray) or len(reference_x) == 0:
        raise PixelrtError("the reference batch is empty; export needs at least one real image to validate with")
    return image.check_images(reference_x, "reference images", "reference images are {got} but the model's "
                              "checkpoint is for {want}; pass --data with images of that shape")


def check_finite_model(model: torch.nn.Module) -> None:
    """Refuse to export a model with NaN or infinite weights: its graphs would validate as 'nan'."""
    bad = [n for n, p in model.state_dict().items() if p.is_floating_point() and not bool(torch.isfinite(p).all())]
    if bad:
        raise PixelrtError(f"the model has non-finite weights in {len(bad)} tensors ({', '.join(bad[:3])}"
                           f"{', ...' if len(bad) > 3 else ''}); training diverged: retrain with a lower --lr, or "
                           "export an earlier checkpoint")


def finite_validation(measured: dict) -> dict:
    """The export's validation record, or ParityError if any measurement is NaN or infinite (fail closed:
    a NaN compares false against every budget, so it would otherwise pass)."""
    bad = [k for k, v in measured.items() if isinstance(v, float) and not np.isfinite(v)]
    if bad:
        raise ParityError(f"export validation measured non-finite values ({', '.join(f'{k}={measured[k]}' for k in bad)}); "
                          "the graphs are not faithful and nothing was written")
    return measured


@dataclass
class ExportCheck:
    full_max_dbpd: float
    full_max_dlogp: float
    step_max_dlogp: float
    step_max_dstate: float
    step_value_agreement: float
    positions: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def validate_bundle(bundle: Bundle, model: torch.nn.Module, x: np.ndarray, seed: int = 0) -> ExportCheck:
    """Compare both graphs with PyTorch; raise ParityError naming the miss."""
    with torch.inference_mode():
        ref_logp = model.log_prob(torch.from_numpy(x)).numpy()
    with OrtBackend(bundle.graph_path("full")) as full:
        out = full.infer({"x": x})
    dbpd = np.abs(bundle.image.bits_per_dim(out["loglik"]) - bundle.image.bits_per_dim(ref_logp.reshape(len(x), -1).sum(1)))
    dlogp = np.abs(out["logp"] - ref_logp)
    step = _validate_step(bundle, model, batch=len(x), seed=seed)
    check = ExportCheck(float(dbpd.max()), float(dlogp.max()), *step)
    misses = []
    if check.full_max_dbpd > BPD_BUDGET:
        misses.append(f"full graph |delta bits/dim| {check.full_max_dbpd:.2e} > {BPD_BUDGET:.0e}")
    if check.full_max_dlogp > LOGP_BUDGET:
        misses.append(f"full graph |delta log p| {check.full_max_dlogp:.2e} > {LOGP_BUDGET:.0e}")
    if check.step_max_dlogp > LOGP_BUDGET or check.step_max_dstate > LOGP_BUDGET:
        misses.append(f"step graph |delta log p| {check.step_max_dlogp:.2e}, |delta state| {check.step_max_dstate:.2e} > {LOGP_BUDGET:.0e}")
    if check.step_value_agreement < 1.0:
        misses.append(f"step graph sampled values agree on only {check.step_value_agreement:.1%} of draws")
    if misses:
        raise ParityError("export validation failed (ONNX Runtime vs PyTorch): " + "; ".join(misses)
                          + ". The graph is not faithful; report this with the checkpoint.")
    return check


def _validate_step(bundle: Bundle, model, batch: int, seed: int):
    """Random caches and pixels at corner, edge and random positions; every output compared."""
    from pixelrt.models.reference import TorchStepRunner

    rng = np.random.default_rng(seed)
    img = bundle.image
    C, H, W = img.shape
    positions = {(0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1), (H // 2, W // 2)}
    positions |= {(int(rng.integers(H)), int(rng.integers(W))) for _ in range(3)}
    torch_runner = TorchStepRunner(model)
    dlogp = dstate = 0.0
    agree = total = 0
    with OrtBackend(bundle.graph_path("step")) as ort_step:
        for (i, j) in sorted(positions):
            for c in range(C):
                feeds = {
                    "pixel": rng.integers(0, img.levels, (batch, C)).astype(np.int64),
                    "row": np.array(i, np.int64), "col": np.array(j, np.int64), "channel": np.array(c, np.int64),
                    "force": np.where(rng.random(batch) < 0.5, rng.integers(0, img.levels, batch), -1).astype(np.int64),
                    "noise": rng.random(batch, dtype=np.float32),
                    **{s.name: rng.standard_normal((batch, *s.shape[1:])).astype(np.float32) for s in bundle.state},
                }
                a, b = ort_step.infer(feeds), torch_runner.infer(feeds)
                same = a["value"] == b["value"]
                agree, total = agree + int(same.sum()), total + batch
                dlogp = max(dlogp, float(np.abs(a["logp"] - b["logp"])[same].max(initial=0.0)))
                for s in (s for s in bundle.state if s.update != "row"):  # row states: the row graph's outputs
                    dstate = max(dstate, float(np.abs(a[s.source] - b[s.source])[same].max(initial=0.0)))
    return dlogp, dstate, agree / total, len(positions) * C
