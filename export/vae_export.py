"""Export a VAE: encoder.onnx + decoder.onnx + reference bounds + manifest, validated, then moved into place.

The manifest is the one format of ``runtime/bundle.py`` with ``kind: "vae"``, a ``latent``
section, and graphs ``encoder`` / ``decoder`` instead of ``full`` / ``step``. Validation runs
the runtime's own estimators (``runtime/vae.py``) on the ORT graphs and compares them, sample
for sample, with the model's PyTorch bounds at a batch size the graphs were not traced with.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from pixelrt.atomic import atomic_directory
from pixelrt.errors import ParityError, PixelrtError
from pixelrt.export.onnx_export import TRACE_BATCH, _export
from pixelrt.models.vae import VAE, DecoderGraph, EncoderGraph
from pixelrt.export.validate import check_finite_model, finite_validation, check_reference_images
from pixelrt.bundle import Bundle, GraphSpec, HeadSpec, ImageSpec, LatentSpec, Manifest, ReferenceSpec, TensorSpec, \
    load_bundle
from pixelrt.bundle.writer import pending, write_manifest
from pixelrt.runtime.ort_backend import OrtBackend
from pixelrt.runtime.vae import latent_noise, vae_bounds

REFERENCE = "reference.npz"
REFERENCE_K = 16           # IWAE samples per reference image stored in the bundle
BOUND_BUDGET = 1e-4        # |delta ELBO| and |delta IWAE| per image, nats (FP32)
LOGP_BUDGET = 1e-4         # |delta log p(x|z)| per sub-pixel, nats
LATENT_BUDGET = 1e-4       # |delta mu|, |delta logvar|


@dataclass
class VaeExportCheck:
    encoder_max_dmu: float
    encoder_max_dlogvar: float
    decoder_max_dlogp: float
    decoder_max_dmean: float
    sample_agreement: float      # identical sub-pixels under shared noise
    max_delta_elbo: float        # nats per image, ORT estimators vs PyTorch bounds
    max_delta_iwae: float
    images: int
    samples: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class VaeExportResult:
    bundle: Bundle
    check: VaeExportCheck


def graph_io(image: ImageSpec, latent: int) -> dict[str, GraphSpec]:
    C, H, W = image.shape
    img = ("batch", C, H, W)
    mu = TensorSpec("mu", "float32", ("batch", latent))
    return {
        "encoder": GraphSpec("encoder.onnx", (TensorSpec("x", "uint8", img),),
                             (mu, TensorSpec("logvar", "float32", ("batch", latent)))),
        "decoder": GraphSpec("decoder.onnx",
                             (TensorSpec("z", "float32", ("batch", latent)),
                              TensorSpec("x", "uint8", img, note="image scored by loglik/logp"),
                              TensorSpec("noise", "float32", img, note="uniform [0, 1) for sample")),
                             (TensorSpec("loglik", "float32", ("batch",), unit="nats"),
                              TensorSpec("logp", "float32", img, unit="nats"), TensorSpec("sample", "uint8", img),
                              TensorSpec("mean", "float32", img, unit="levels"))),
    }


def export_graphs(model: VAE, image: ImageSpec, tmp: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=65536)
    x = torch.zeros(TRACE_BATCH, *image.shape, dtype=torch.uint8)
    z = torch.zeros(TRACE_BATCH, model.config.latent)
    noise = torch.full((TRACE_BATCH, *image.shape), 0.5)
    enc, dec = EncoderGraph(model), DecoderGraph(model)
    _export(enc, (x,), tmp / "encoder.onnx", enc.input_names, enc.output_names, ({0: batch},))
    _export(dec, (z, x, noise), tmp / "decoder.onnx", dec.input_names, dec.output_names,
            ({0: batch}, {0: batch}, {0: batch}))


def export_vae_bundle(model: VAE, image: ImageSpec, reference_x: np.ndarray, out: str | Path,
                      source: dict | None = None, overwrite: bool = False, log=print, seed: int = 0) -> VaeExportResult:
    """Export ``model`` into the bundle directory ``out`` (atomic); ``reference_x``: real uint8 images."""
    model = model.eval()
    c = model.config
    if (c.channels, c.height, c.width, c.levels) != (*image.shape, image.levels):
        raise PixelrtError(f"the VAE was built for {c.channels}x{c.height}x{c.width}, {c.levels} levels, not "
                           f"{'x'.join(map(str, image.shape))}, {image.levels} levels")
    reference_x = check_reference_images(image, reference_x)
    check_finite_model(model)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        log(f"exporting encoder.onnx and decoder.onnx ({'x'.join(map(str, image.shape))}, {image.levels} levels, "
            f"latent {c.latent}, {c.likelihood} likelihood)")
        export_graphs(model, image, tmp)
        eps = latent_noise(len(reference_x), REFERENCE_K, c.latent, seed)
        ref = model.bounds(torch.from_numpy(reference_x), torch.from_numpy(eps))
        elbo, iwae = ref["elbo"].numpy(), ref["iwae"].numpy()
        np.savez(tmp / REFERENCE, x=reference_x, eps=eps, elbo=elbo, iwae=iwae)
        manifest = write_manifest(tmp, _manifest(model, image, elbo, iwae, seed, source or {}))
        check_x = reference_x if len(reference_x) != TRACE_BATCH else np.concatenate([reference_x, reference_x[:1]])
        log(f"validating with ONNX Runtime at {len(check_x)} images x {REFERENCE_K} samples (traced at batch {TRACE_BATCH})")
        check = validate_vae_bundle(load_bundle(tmp), model, check_x, seed=seed)
        write_manifest(tmp, replace(manifest, validation=finite_validation(check.as_dict())))
    return VaeExportResult(load_bundle(out), check)


def vae_reference(image: ImageSpec, elbo: np.ndarray, iwae: np.ndarray, seed: int) -> ReferenceSpec:
    per = lambda a: tuple(float(v) for v in a)  # noqa: E731
    return ReferenceSpec(REFERENCE, int(len(elbo)), {
        "elbo_nats": per(elbo), "iwae_nats": per(iwae), "bits_per_dim": per(image.bits_per_dim(elbo)),
        "iwae_bits_per_dim": per(image.bits_per_dim(iwae))}, samples=REFERENCE_K, noise_seed=seed)


def _manifest(model: VAE, image: ImageSpec, elbo: np.ndarray, iwae: np.ndarray, seed: int, source: dict,
              head: HeadSpec | None = None) -> Manifest:
    """The VAE's manifest; ``head`` (default: the decoder's likelihood) for models with another p(x|z)."""
    from pixelrt.export.bundle_writer import file_meta, now, versions

    c = model.config
    head = head or (HeadSpec("discretized-logistic", image.levels, "inverse-cdf", components=1) if c.likelihood == "logistic"
            else HeadSpec("categorical", image.levels, "inverse-cdf"))
    d = model.describe()
    return Manifest(
        kind="vae", family=d["family"], config=d["config"], image=image, head=head, latent=LatentSpec(c.latent),
        graphs=graph_io(image, c.latent),
        files={"encoder.onnx": file_meta(), "decoder.onnx": file_meta(), REFERENCE: pending()},
        reference=vae_reference(image, elbo, iwae, seed), source=source, versions=versions(), created=now())


def compare_graphs(model: VAE, encoder, decoder, x: np.ndarray, seed: int = 0) -> dict:
    """Encoder and decoder outputs, one backend vs the PyTorch graph modules, on the same feeds."""
    from pixelrt.models.vae import TorchGraphRunner

    rng = np.random.default_rng(seed)
    t_enc, t_dec = TorchGraphRunner(EncoderGraph(model)), TorchGraphRunner(DecoderGraph(model))
    a, b = encoder.infer({"x": x}), t_enc.infer({"x": x})
    feeds = {"z": rng.standard_normal((len(x), model.config.latent), dtype=np.float32), "x": x,
             "noise": rng.random(x.shape, dtype=np.float32)}
    da, db = decoder.infer(feeds), t_dec.infer(feeds)
    return {"dmu": np.abs(a["mu"] - b["mu"]), "dlogvar": np.abs(a["logvar"] - b["logvar"]),
            "dlogp": np.abs(da["logp"] - db["logp"]), "dmean": np.abs(da["mean"] - db["mean"]),
            "same_sample": da["sample"] == db["sample"]}


def validate_vae_bundle(bundle: Bundle, model: VAE, x: np.ndarray, seed: int = 0,
                        samples: int = REFERENCE_K) -> VaeExportCheck:
    """ORT graphs vs PyTorch: raw outputs, then the bounds on shared noise. A miss raises ParityError."""
    eps = latent_noise(len(x), samples, model.config.latent, seed)
    with torch.inference_mode():
        ref = model.bounds(torch.from_numpy(x), torch.from_numpy(eps))
    with OrtBackend(bundle.graph_path("encoder")) as enc, OrtBackend(bundle.graph_path("decoder")) as dec:
        raw = compare_graphs(model, enc, dec, x, seed)
        got = vae_bounds(enc, dec, bundle.image, x, [samples], eps=eps)
    check = VaeExportCheck(
        float(raw["dmu"].max()), float(raw["dlogvar"].max()), float(raw["dlogp"].max()), float(raw["dmean"].max()),
        float(raw["same_sample"].mean()), float(np.abs(got.elbo - ref["elbo"].numpy()).max()),
        float(np.abs(got.iwae[samples] - ref["iwae"].numpy()).max()), len(x), samples)
    misses = []
    if max(check.encoder_max_dmu, check.encoder_max_dlogvar) > LATENT_BUDGET:
        misses.append(f"encoder |delta mu| {check.encoder_max_dmu:.2e}, |delta logvar| "
                      f"{check.encoder_max_dlogvar:.2e} > {LATENT_BUDGET:.0e}")
    if check.decoder_max_dlogp > LOGP_BUDGET:
        misses.append(f"decoder |delta log p| {check.decoder_max_dlogp:.2e} > {LOGP_BUDGET:.0e}")
    if max(check.max_delta_elbo, check.max_delta_iwae) > BOUND_BUDGET:
        misses.append(f"|delta ELBO| {check.max_delta_elbo:.2e}, |delta IWAE-{samples}| {check.max_delta_iwae:.2e} "
                      f"> {BOUND_BUDGET:.0e} nats")
    if misses:
        raise ParityError("export validation failed (ONNX Runtime vs PyTorch): " + "; ".join(misses)
                          + ". The graph is not faithful; report this with the checkpoint.")
    return check
