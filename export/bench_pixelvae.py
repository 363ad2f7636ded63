"""`pixelrt bench --model pvae28`: PixelVAE sampling, z -> image, naive vs cached, in one run.

The PixelVAE's decoder is what runs on the device: the features graph once per latent, then the
conditioned Gated PixelCNN one sub-pixel at a time. ``PVAE28`` is data (1x28x28, 256 levels,
latent 16, the family's default widths, random weights, fixed seed), like ref28 and vae28.

* naive (PyTorch): the features module once, then the PixelCNN's full forward pass per sub-pixel
  given the map (``models.reference.naive_sample``); the first ``naive_rows`` rows are timed and
  scaled to the height, as in the other benches;
* cached (ONNX Runtime): the whole bundle through ``runtime.pixelvae.decode_latents`` (features graph,
  step graph per sub-pixel, row graph per finished row), best of two whole-image runs; the features
  graph's share of it is reported beside.

Ratios within one run are what to compare on a loaded machine; bench never asserts a time.
"""
from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pixelrt.errors import PixelrtError
from pixelrt.bundle import ImageSpec

IMAGE = ImageSpec(1, 28, 28, 256)
LATENT = 16


def run_pixelvae_bench(batches: list[int], naive_rows: int = 1, threads: int | None = None, seed: int = 0,
                       image: ImageSpec = IMAGE, overrides: dict | None = None, log=None) -> list[dict]:
    from pixelrt.export.bench import _best_of
    from pixelrt.export.pixelvae_export import export_pixelvae_bundle
    from pixelrt.models.pixelvae import CONTEXT, PixelVAE, PixelVAEConfig
    from pixelrt.models.reference import naive_sample
    from pixelrt.runtime.pixelvae import decode_latents, features, open_pixelvae, pixelvae_noise

    log = log or (lambda s: print(s, flush=True))
    if not batches or min(batches) < 1 or naive_rows < 1:
        raise PixelrtError("batch sizes and --naive-rows must be positive integers")
    if threads is not None:
        torch.set_num_threads(threads)
    C, H, W = image.shape
    torch.manual_seed(seed)
    model = PixelVAE(PixelVAEConfig(channels=C, levels=image.levels, height=H, width=W,
                                    **{"latent": LATENT, **(overrides or {})})).eval()
    rows = min(naive_rows, H)
    records = []
    with tempfile.TemporaryDirectory(prefix="pixelrt-bench-pvae-") as tmp:
        log(f"exporting a PixelVAE bundle ({C}x{H}x{W}, {image.levels} levels, latent {model.config.latent}, "
            "random weights)")
        x = np.random.default_rng(seed).integers(0, image.levels, (2, C, H, W)).astype(np.uint8)
        pv = open_pixelvae(export_pixelvae_bundle(model, image, x, Path(tmp) / "b", log=lambda s: None)[0])
        with _ort_backends(pv, threads) as opened:
            for b in batches:
                z, noise = pixelvae_noise(pv, b, seed)
                log(f"[batch {b}] naive torch, {rows} row(s) ...")
                with torch.inference_mode():
                    model.pixelcnn.logits_from_float(torch.zeros(b, C, H, W), cond=model.cond(torch.from_numpy(z)))

                    def naive():
                        cond = model.cond(torch.from_numpy(z)).numpy()
                        naive_sample(model.pixelcnn, noise, image.levels, rows=rows, context={CONTEXT: cond})
                    dt = _best_of(naive, 3, 4.0)
                records.append(_rec("torch", "naive", b, dt * H / rows / b, image))
                log(f"[batch {b}] cached ort, whole image ...")
                decode_latents(pv, opened, z, noise, batch_size=b)  # warm-up
                best = _best_of(lambda: decode_latents(pv, opened, z, noise, batch_size=b), 2, 0.0)
                feat = _best_of(lambda: features(opened["features"], z, CONTEXT), 5, 1.0)
                records.append({**_rec("ort", "cached", b, best / b, image), "features_share": feat / best})
    log(format_pixelvae_report(records))
    return records


@contextlib.contextmanager
def _ort_backends(pv, threads: int | None):
    from pixelrt.runtime.ort_backend import OrtBackend

    def ort(bundle, name):
        return OrtBackend(bundle.graph_path(name), threads=threads or 0)

    with ort(pv.top, "features") as feat, ort(pv.pixelcnn, "step") as step, ort(pv.pixelcnn, "row") as row:
        yield {"features": feat, "step": (step, row)}


def _rec(runtime, method, batch, seconds, image) -> dict:
    return {"model": "pvae28", "runtime": runtime, "method": method, "batch": batch, "ms_per_image": seconds * 1e3,
            "image": list(image.shape), "levels": image.levels, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def format_pixelvae_report(records: list[dict]) -> str:
    naive = {r["batch"]: r["ms_per_image"] for r in records if r["method"] == "naive"}
    head = f"{'model':7s} {'runtime':7s} {'method':7s} {'batch':>5s} {'ms/image':>11s} {'vs naive':>9s} {'features':>9s}"
    lines = [head, "-" * len(head)]
    for r in records:
        share = f"{100 * r['features_share']:8.2f}%" if "features_share" in r else f"{'-':>9s}"
        lines.append(f"{r['model']:7s} {r['runtime']:7s} {r['method']:7s} {r['batch']:5d} {r['ms_per_image']:11.2f} "
                     f"{naive[r['batch']] / r['ms_per_image']:8.1f}x {share}")
    lines.append("naive: features once + a full PixelCNN pass per sub-pixel, first row(s) timed and scaled to the "
                 "height; cached: the whole image (features graph, step and row graphs); features: its share of that")
    return "\n".join(lines)
