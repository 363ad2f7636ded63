"""A VAE decoder's throughput, ONNX Runtime vs PyTorch, in one run: the ``decoder`` measurement.

The decoder is the part of a VAE that runs on the device (z -> image), so this times
decoder.onnx in ORT and the same ``DecoderGraph`` module in PyTorch (inference mode) on the
same feeds, at each batch size, and reports images per second and the ORT / PyTorch ratio.
The model is data (a row of ``bench/specs.py``: random weights, fixed seed), like ref28.
"""
from __future__ import annotations

import os
import platform
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from pixelrt.bench.common import _best_of, _load, export_temporary, random_images, set_threads, write_records
from pixelrt.bench.specs import VAE28, BenchSpec
from pixelrt.bundle import ImageSpec
from pixelrt.errors import PixelrtError


def decoder_feeds(image: ImageSpec, latent: int, batch: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"z": rng.standard_normal((batch, latent), dtype=np.float32),
            "x": np.zeros((batch, *image.shape), np.uint8),
            "noise": rng.random((batch, *image.shape), dtype=np.float32)}


def time_decoder(runner, feeds: dict, repeats: int = 5, budget_s: float = 3.0) -> float:
    """Seconds per call: one warm-up call, then the best of up to ``repeats`` within ``budget_s``."""
    runner.infer(feeds)
    return _best_of(lambda: runner.infer(feeds, check=False), repeats, budget_s)


def run_vae_bench(batches: list[int], json_path: str | os.PathLike | None = None, spec: BenchSpec | None = None,
                  threads: int | None = None, log=None) -> list[dict]:
    """Decoder images/second in PyTorch and ORT at each batch; prints a table, returns the records."""
    import onnxruntime as ort

    from pixelrt.models.vae import DecoderGraph, TorchGraphRunner
    from pixelrt.runtime.ort_backend import OrtBackend

    log = log or (lambda s: print(s, flush=True))
    spec = spec or VAE28
    if not batches or min(batches) < 1:
        raise PixelrtError(f"batch sizes must be positive integers, got {batches}")
    set_threads(threads)
    model, image = spec.build(), spec.image
    latent = model.config.latent
    common = {"model": spec.name, "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "torch": torch.__version__, "onnxruntime": ort.__version__, "cpu_count": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "ort_threads": threads or 0, "machine": platform.machine(),
              "parameters_decoder": sum(p.numel() for p in model.decoder.parameters())}
    records = []
    with tempfile.TemporaryDirectory(prefix="pixelrt-bench-") as tmp:
        log(f"exporting {spec.name} to a temporary bundle")
        bundle = export_temporary(model, image, random_images(image, 3), Path(tmp), spec.name)
        torch_runner = TorchGraphRunner(DecoderGraph(model))
        with OrtBackend(bundle.graph_path("decoder"), threads=threads or 0) as ort_runner:
            for b in batches:
                feeds = decoder_feeds(image, latent, b, spec.seed)
                for name, runner in (("torch", torch_runner), ("ort", ort_runner)):
                    log(f"[batch {b}] decoder, {name} ...")
                    sec = time_decoder(runner, feeds)
                    records.append({**common, "runtime": name, "batch": b, "ms_per_call": sec * 1e3,
                                    "images_per_second": b / sec, "load_avg_1m": round(_load(), 2)})
    log(format_vae_report(records))
    write_records(json_path, records, log)
    return records


def format_vae_report(records: list[dict]) -> str:
    torch_ips = {r["batch"]: r["images_per_second"] for r in records if r["runtime"] == "torch"}
    head = f"{'model':7s} {'runtime':7s} {'batch':>5s} {'ms/call':>10s} {'images/s':>11s} {'vs torch':>9s}"
    lines = [head, "-" * len(head)]
    for r in records:
        ratio = r["images_per_second"] / torch_ips[r["batch"]] if r["batch"] in torch_ips else float("nan")
        lines.append(f"{r['model']:7s} {r['runtime']:7s} {r['batch']:5d} {r['ms_per_call']:10.3f} "
                     f"{r['images_per_second']:11.1f} {ratio:8.2f}x")
    r0 = records[0]
    lines.append(f"decoder.onnx (z, x, noise -> loglik, logp, sample, mean); {r0['parameters_decoder']:,} decoder "
                 f"parameters; torch threads {r0['torch_threads']}, ORT threads {r0['ort_threads'] or 'default'}")
    load, cpus = max(r["load_avg_1m"] for r in records), r0["cpu_count"] or 1
    if load > cpus:
        lines.append(f"warning: 1-min load average reached {load:.1f} on {cpus} CPUs; compare ratios within this "
                     "run only, or re-run idle")
    return "\n".join(lines)
