"""What export does per bundle kind: the reference it stores and the checks beyond ORT == PyTorch.

One table, ``KINDS``, keyed like ``pixelrt.bundle.KINDS`` and the runtime's pipelines. Every check
runs the torch-free runtime on the bundle just written, the way a user will, against PyTorch or
against another graph of the same bundle:

* autoregressive: the teacher-forced ORT step loop against the ORT full graph (per sub-pixel and per
  image), freely sampled images' summed step log-probs against their full-graph log-likelihood, and a
  causality probe (changing one later sub-pixel must leave every earlier log-prob unchanged);
* vae, pixelvae: ELBO and IWAE-K per image through the runtime's estimators against the model's bounds
  on the same latent noise;
* multiscale: the whole model's bits/dim through the runtime's multi-scale evaluation against PyTorch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from pixelrt.bundle import ReferenceSpec
from pixelrt.export.validator import BPD_BUDGET, keyed
from pixelrt.models.contract import FullGraph, torch_context
from pixelrt.runtime.bundle_checks import step_checks
from pixelrt.runtime.parity import Row, diff_row

REFERENCE = "reference.npz"
REFERENCE_K = 16     # IWAE samples per reference image of a latent-variable bundle
BOUND_BUDGET = 1e-4  # |delta ELBO| and |delta IWAE| per image, nats (FP32)


def _floats(a) -> tuple:
    return tuple(float(v) for v in a)


# -- references -------------------------------------------------------------------------------------
def loglik_reference(spec, x: np.ndarray, context: dict) -> tuple[dict, ReferenceSpec]:
    """Per-image log-likelihood of the reference images by the full path (the full graph's module)."""
    with torch.inference_mode():
        ll = FullGraph(spec.model, spec.context_names())(torch.from_numpy(x), *torch_context(context).values())[0]
    return _loglik(spec, ll.double().numpy())


def model_loglik_reference(spec, x: np.ndarray, context: dict) -> tuple[dict, ReferenceSpec]:
    """Per-image log-likelihood by the model's own forward (a composite without a full graph)."""
    with torch.inference_mode():
        return _loglik(spec, spec.model(torch.from_numpy(x)).double().numpy())


def _loglik(spec, ll: np.ndarray) -> tuple[dict, ReferenceSpec]:
    return {"loglik": ll}, ReferenceSpec(REFERENCE, len(ll), {"loglik_nats": _floats(ll),
                                                              "bits_per_dim": _floats(spec.image.bits_per_dim(ll))})


def bounds_reference(spec, x: np.ndarray, context: dict, seed: int = 0) -> tuple[dict, ReferenceSpec]:
    """ELBO and IWAE-K of the reference images on stored latent noise (``eps``)."""
    from pixelrt.runtime.vae import latent_noise

    eps = latent_noise(len(x), REFERENCE_K, spec.latent.size, seed)
    with torch.inference_mode():
        ref = spec.model.bounds(torch.from_numpy(x), torch.from_numpy(eps))
    elbo, iwae = ref["elbo"].numpy(), ref["iwae"].numpy()
    img = spec.image
    return {"eps": eps, "elbo": elbo, "iwae": iwae}, ReferenceSpec(REFERENCE, len(x), {
        "elbo_nats": _floats(elbo), "iwae_nats": _floats(iwae), "bits_per_dim": _floats(img.bits_per_dim(elbo)),
        "iwae_bits_per_dim": _floats(img.bits_per_dim(iwae))}, samples=REFERENCE_K, noise_seed=seed)


# -- checks -----------------------------------------------------------------------------------------
def autoregressive_checks(spec, bundle, x: np.ndarray, context: dict, seed: int = 0) -> list[Row]:
    """The runtime's own bundle checks (runtime/bundle_checks.py), on ONNX Runtime: what `pixelrt verify`
    runs on the device, run here before the bundle is moved into place."""
    return step_checks(bundle, x, context, "ort", seed)


def vae_checks(spec, bundle, x: np.ndarray, context: dict, seed: int = 0) -> list[Row]:
    from pixelrt.runtime.ort_backend import OrtBackend
    from pixelrt.runtime.vae import vae_bounds

    def bounds(eps):
        with OrtBackend(bundle.graph_path("encoder")) as enc, OrtBackend(bundle.graph_path("decoder")) as dec:
            return vae_bounds(enc, dec, bundle.image, x, [REFERENCE_K], eps=eps)

    return _bounds_rows(spec, x, bounds, seed)


def pixelvae_checks(spec, bundle, x: np.ndarray, context: dict, seed: int = 0) -> list[Row]:
    from pixelrt.runtime.pixelvae import open_pixelvae, pixelvae_backends, pixelvae_bounds

    def bounds(eps):
        pv = open_pixelvae(bundle)
        with pixelvae_backends(pv) as b:
            return pixelvae_bounds(pv, b, x, [REFERENCE_K], eps=eps)

    return _bounds_rows(spec, x, bounds, seed)


def _bounds_rows(spec, x: np.ndarray, runtime_bounds, seed: int) -> list[Row]:
    """ELBO / IWAE-K of ``x``: the runtime's estimators on the ORT graphs vs the model's bounds."""
    from pixelrt.runtime.vae import latent_noise

    eps = latent_noise(len(x), REFERENCE_K, spec.latent.size, seed)
    with torch.inference_mode():
        ref = spec.model.bounds(torch.from_numpy(x), torch.from_numpy(eps))
    got = runtime_bounds(eps)
    return [keyed(diff_row("ELBO per image: runtime estimator on ORT vs PyTorch", got.elbo, ref["elbo"].numpy(),
                           BOUND_BUDGET, "nats"), "max_delta_elbo"),
            keyed(diff_row(f"IWAE-{REFERENCE_K} per image: runtime estimator on ORT vs PyTorch",
                           got.iwae[REFERENCE_K], ref["iwae"].numpy(), BOUND_BUDGET, "nats"), "max_delta_iwae")]


def multiscale_checks(spec, bundle, x: np.ndarray, context: dict, seed: int = 0) -> list[Row]:
    from pixelrt.runtime.multiscale import evaluate_multiscale, open_multiscale

    with torch.inference_mode():
        ll = spec.model(torch.from_numpy(x)).double().numpy()
    res = evaluate_multiscale(open_multiscale(bundle), x)
    return [keyed(diff_row("whole model bits/dim: runtime (cond + both stages) on ORT vs PyTorch", res.bits_per_dim,
                           spec.image.bits_per_dim(ll), BPD_BUDGET, "bits/dim"), "full_max_dbpd")]


@dataclass(frozen=True)
class Kind:
    reference: Callable
    checks: Callable


KINDS = {
    "autoregressive": Kind(loglik_reference, autoregressive_checks),
    "vae": Kind(bounds_reference, vae_checks),
    "pixelvae": Kind(bounds_reference, pixelvae_checks),
    "multiscale": Kind(model_loglik_reference, multiscale_checks),
}
