"""Export a PixelVAE as ONE bundle (layout: runtime/pixelvae.py), validated, then moved into place.

encoder.onnx is the VAE's (``models.vae.EncoderGraph``); features.onnx maps z to the conditioning
map; pixelcnn/ is written by the Gated PixelCNN's own exporter (full, step and row graphs with the
``cond`` context, validated there against PyTorch at an untraced batch). The top manifest lists every
file of both parts with its sha256. Validation here compares, at a batch the graphs were not traced
with: the encoder and features graphs; ELBO and IWAE-K per image through the torch-free estimators on
ORT against ``PixelVAE.bounds`` on the same noise; and the step loop teacher-forced on one image given
its posterior mean against the full graph (summed step log-probs == full log p(x|z)).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from pixelrt.atomic import atomic_directory
from pixelrt.errors import ParityError, PixelrtError
from pixelrt.export.onnx_export import TRACE_BATCH, _export
from pixelrt.export.validate import check_finite_model, finite_validation, BPD_BUDGET, LOGP_BUDGET, check_reference_images  # FP32: per image, per sub-pixel
from pixelrt.export.vae_export import BOUND_BUDGET, LATENT_BUDGET, REFERENCE_K, _manifest as vae_manifest, graph_io
from pixelrt.models.pixelvae import CONTEXT, FeaturesGraph, PixelVAE
from pixelrt.models.vae import EncoderGraph
from pixelrt.bundle import MANIFEST, GraphSpec, HeadSpec, ImageSpec, Manifest, PartSpec, TensorSpec, load_bundle
from pixelrt.bundle.writer import pending, write_manifest
from pixelrt.runtime.vae import latent_noise

REFERENCE = "reference.npz"
SUB = "pixelcnn"


@dataclass
class PixelVAEExportCheck:
    encoder_max_dmu: float
    encoder_max_dlogvar: float
    features_max_dcond: float
    max_delta_elbo: float      # nats per image, ORT estimators vs PixelVAE.bounds
    max_delta_iwae: float
    step_vs_full_max_dlogp: float  # teacher-forced step log-probs vs the full graph's, nats per sub-pixel
    step_vs_full_max_dbpd: float   # their sums per image, bits/dim
    images: int
    samples: int

    def as_dict(self) -> dict:
        return asdict(self)


def _features_io(latent: int, shape: list) -> GraphSpec:
    return GraphSpec("features.onnx", (TensorSpec("z", "float32", ("batch", latent)),),
                     (TensorSpec(CONTEXT, "float32", ("batch", *shape)),))


def posterior_maps(model: PixelVAE, x: np.ndarray) -> np.ndarray:
    """The conditioning map at each image's posterior mean: what the PixelCNN sees for a typical z."""
    with torch.inference_mode():
        mu, _ = model.encoder(torch.from_numpy(x))
        return model.cond(mu).numpy()


def export_pixelvae_bundle(model: PixelVAE, image: ImageSpec, reference_x: np.ndarray, out: str | Path,
                           source: dict | None = None, overwrite: bool = False, log=print, seed: int = 0):
    """Write and validate the PixelVAE bundle at ``out`` (atomic); returns (top Bundle, PixelVAEExportCheck)."""
    from pixelrt.export.gated_export import export_gated_bundle

    model = model.eval()
    c = model.config
    if (c.channels, c.height, c.width, c.levels) != (*image.shape, image.levels):
        raise PixelrtError(f"the PixelVAE was built for {c.channels}x{c.height}x{c.width}, {c.levels} levels, not "
                           f"{'x'.join(map(str, image.shape))}, {image.levels} levels")
    ref_x = check_reference_images(image, reference_x)
    check_finite_model(model)
    batch = torch.export.Dim("batch", min=1, max=65536)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        log(f"exporting encoder.onnx and features.onnx (latent {c.latent} -> map {c.hidden}x{c.height}x{c.width})")
        enc, feat = EncoderGraph(model), FeaturesGraph(model)
        _export(enc, (torch.zeros(TRACE_BATCH, *image.shape, dtype=torch.uint8),), tmp / "encoder.onnx",
                enc.input_names, enc.output_names, ({0: batch},))
        _export(feat, (torch.zeros(TRACE_BATCH, c.latent),), tmp / "features.onnx", feat.input_names,
                feat.output_names, ({0: batch},))
        log(f"exporting {SUB}/: the conditioned Gated PixelCNN (full, step, row graphs), validated on its own")
        export_gated_bundle(model.pixelcnn, image, ref_x, tmp / SUB, source={"role": "PixelVAE decoder p(x|z)"},
                            context={CONTEXT: posterior_maps(model, ref_x)}, log=lambda m: None)
        eps = latent_noise(len(ref_x), REFERENCE_K, c.latent, seed)
        with torch.inference_mode():
            ref = model.bounds(torch.from_numpy(ref_x), torch.from_numpy(eps))
        elbo, iwae = ref["elbo"].numpy(), ref["iwae"].numpy()
        np.savez(tmp / REFERENCE, x=ref_x, eps=eps, elbo=elbo, iwae=iwae)
        manifest = write_manifest(tmp, _manifest(model, image, tmp, elbo, iwae, seed, source or {}))
        check_x = ref_x if len(ref_x) != TRACE_BATCH else np.concatenate([ref_x, ref_x[:1]])
        log(f"validating with ONNX Runtime at {len(check_x)} images x {REFERENCE_K} samples (traced at batch {TRACE_BATCH})")
        check = validate_pixelvae(tmp, model, check_x, seed)
        write_manifest(tmp, replace(manifest, validation=finite_validation(check.as_dict())))
    return load_bundle(out), check


def _manifest(model: PixelVAE, image: ImageSpec, root: Path, elbo, iwae, seed: int, source: dict) -> Manifest:
    c = model.config
    head = HeadSpec("categorical", image.levels, "inverse-cdf", decoder="autoregressive (Gated PixelCNN given features(z))")
    doc = vae_manifest(model, image, elbo, iwae, seed, source, head)  # the VAE's record: latent, reference, versions
    sub = load_bundle(root / SUB).manifest
    files = {"encoder.onnx": doc.files["encoder.onnx"], "features.onnx": doc.files["encoder.onnx"],
             REFERENCE: pending(), f"{SUB}/{MANIFEST}": pending(),
             **{f"{SUB}/{name}": pending(r.provenance) for name, r in sub.files.items()}}
    return replace(doc, kind="pixelvae", files=files,
                   graphs={"encoder": graph_io(image, c.latent)["encoder"],
                           "features": _features_io(c.latent, [c.hidden, c.height, c.width])},
                   parts={"pixelcnn": PartSpec(SUB, image, CONTEXT, "p(x|z): a Gated PixelCNN given features(z)")},
                   notes={"log_px": f"{SUB}/full.onnx on (x, features(z))",
                          "sampling": f"z ~ N(0, I) -> features.onnx once -> the step loop of {SUB}/ with {CONTEXT}"})


def validate_pixelvae(root: Path, model: PixelVAE, x: np.ndarray, seed: int = 0,
                      samples: int = REFERENCE_K) -> PixelVAEExportCheck:
    """ORT vs PyTorch on the top-level graphs and the bounds; the step loop vs the full graph. Raises on a miss."""
    from pixelrt.runtime.pixelvae import decode_latents, encode, features, open_pixelvae, pixelvae_backends, \
        pixelvae_bounds
    from pixelrt.runtime.sampler import make_noise

    pv = open_pixelvae(root)
    xt = torch.from_numpy(x)
    eps = latent_noise(len(x), samples, model.config.latent, seed)
    with torch.inference_mode():
        ref = model.bounds(xt, torch.from_numpy(eps))
        mu_t, lv_t = model.encoder(xt)
        cond_t = model.cond(mu_t)
    with pixelvae_backends(pv) as b:
        mu, lv = encode(b["encoder"], x)
        cond = features(b["features"], mu_t.numpy(), CONTEXT)
        got = pixelvae_bounds(pv, b, x, [samples], eps=eps)
    with pixelvae_backends(pv, step=True) as b:
        forced = decode_latents(pv, b, mu_t.numpy()[:2], make_noise(2, pv.image, seed, pv.pixelcnn.step_schedule),
                                force=x[:2], desc="teacher-forced")
    with torch.inference_mode():
        full = model.pixelcnn.log_prob(xt[:2], cond=cond_t[:2]).numpy()
    full_ll = full.astype(np.float64).reshape(len(full), -1).sum(1)
    check = PixelVAEExportCheck(
        float(np.abs(mu - mu_t.numpy()).max()), float(np.abs(lv - lv_t.numpy()).max()),
        float(np.abs(cond - cond_t.numpy()).max()), float(np.abs(got.elbo - ref["elbo"].numpy()).max()),
        float(np.abs(got.iwae[samples] - ref["iwae"].numpy()).max()), float(np.abs(forced.logp - full).max()),
        float(np.abs(pv.image.bits_per_dim(forced.log_px) - pv.image.bits_per_dim(full_ll)).max()), len(x), samples)
    misses = [f"{name} {value:.2e} > {budget:.0e}" for name, value, budget in (
        ("encoder |delta mu|", check.encoder_max_dmu, LATENT_BUDGET),
        ("encoder |delta logvar|", check.encoder_max_dlogvar, LATENT_BUDGET),
        ("features |delta cond|", check.features_max_dcond, LATENT_BUDGET),
        ("|delta ELBO| nats", check.max_delta_elbo, BOUND_BUDGET),
        (f"|delta IWAE-{samples}| nats", check.max_delta_iwae, BOUND_BUDGET),
        ("teacher-forced step loop vs full graph, log p per sub-pixel", check.step_vs_full_max_dlogp, LOGP_BUDGET),
        ("teacher-forced step loop vs full graph, bits/dim per image", check.step_vs_full_max_dbpd, BPD_BUDGET))
        if not value <= budget]  # NaN is a miss
    if misses:
        raise ParityError("PixelVAE export validation failed (ONNX Runtime vs PyTorch): " + "; ".join(misses)
                          + ". The graph is not faithful; report this with the checkpoint.")
    return check
