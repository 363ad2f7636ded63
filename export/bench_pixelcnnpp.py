"""`pixelrt bench --model pp32`: PixelCNN++ naive vs cached sampling in ONNX Runtime, beside the
published Fast PixelCNN++ GPU speed-ups (Ramachandran et al. 2017: 2x, 6x, 18x, 61x at batch 1, 4, 16, 64).

* naive: ``naive.onnx`` re-runs the whole network on the whole image for every pixel and samples
  that pixel inside the graph (the same sampler as the step graph), so a pixel costs one full
  forward; every pixel costs the same, so timing ``naive_pixels`` calls and scaling to H*W is exact
  up to noise.
* cached: the bundle's row + step graphs through the runtime's step loop over the first ``rows``
  rows, scaled to the full height. ``rows`` should be a multiple of 2**(resolutions-1) so every
  coarse level's share of the work is in the timed rows (default 4 of 32).

Random weights (the speed does not depend on them). Both are timed in ORT on this machine's CPU,
so the ratios, not the milliseconds, are what compares with the paper's GPU numbers.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pixelrt.errors import PixelrtError
from pixelrt.models import logistic
from pixelrt.models.pixelcnnpp import PixelCNNPP, PixelCNNPPConfig
from pixelrt.bundle import ImageSpec

PP32 = {"config": dict(channels=3, levels=256, filters=64, resnets=2, resolutions=3, mixtures=5, dropout=0.0),
        "image": ImageSpec(3, 32, 32, 256)}
PUBLISHED_SPEEDUP = {1: 2.0, 4: 6.0, 16: 18.0, 64: 61.0}  # Fast PixelCNN++, GPU, vs naive


class NaivePixel(nn.Module):
    """One pixel (row, col) sampled from a full forward pass over the whole image: O(image) per pixel."""

    def __init__(self, model: PixelCNNPP):
        super().__init__()
        self.model, self.cfg = model, model.config

    def forward(self, x, row, col, force, noise):
        params = self.model.params_from_float(self.model.normalize(x))  # (B, P, H, W)
        p = params.index_select(2, row.reshape(1)).index_select(3, col.reshape(1))[:, :, 0, 0]
        return logistic.sample(p, noise, force, self.cfg.channels, self.cfg.mixtures, self.cfg.levels)


def build(spec: dict, seed: int = 0) -> PixelCNNPP:
    torch.manual_seed(seed)
    return PixelCNNPP(PixelCNNPPConfig(**spec["config"])).eval()


def export_naive(model: PixelCNNPP, image: ImageSpec, path: Path) -> None:
    from pixelrt.export.onnx_export import _export

    C, H, W = image.shape
    dim = torch.export.Dim("batch", min=1, max=65536)
    K = C * (model.config.mixtures + 1)
    args = (torch.zeros(2, C, H, W, dtype=torch.long), torch.tensor(1), torch.tensor(1),
            torch.full((2, C), -1, dtype=torch.long), torch.full((2, K), 0.5))
    _export(NaivePixel(model), args, path, ["x", "row", "col", "force", "noise"], ["value", "logp"],
            ({0: dim}, None, None, {0: dim}, {0: dim}))


def time_naive(backend, image: ImageSpec, batch: int, K: int, pixels: int, seed: int = 0) -> float:
    """Seconds per image: ``pixels`` naive calls (after one warm-up), scaled to every pixel of the image."""
    C, H, W = image.shape
    rng = np.random.default_rng(seed)
    x = np.zeros((batch, C, H, W), np.int64)
    feeds = {"x": x, "force": np.full((batch, C), -1, np.int64)}
    backend.infer({**feeds, "row": np.array(0), "col": np.array(0), "noise": rng.random((batch, K), dtype=np.float32)})
    t = time.perf_counter()
    for k in range(pixels):
        i, j = divmod(k, W)
        out = backend.infer({**feeds, "row": np.array(i), "col": np.array(j),
                             "noise": rng.random((batch, K), dtype=np.float32)})
        x[:, :, i, j] = out["value"]
    return (time.perf_counter() - t) / pixels * H * W / batch


def time_cached(step, row, image: ImageSpec, states, sched, batch: int, rows: int, seed: int = 0) -> float:
    """Seconds per image of the row + step loop over ``rows`` rows (after a one-row warm-up), scaled to H."""
    from pixelrt.runtime.sampler import make_noise, step_loop

    sub = ImageSpec(image.channels, rows, image.width, image.levels)
    warm = ImageSpec(image.channels, 1, image.width, image.levels)
    step_loop(step, warm, states, make_noise(batch, warm, seed, sched), schedule=sched, row_runner=row,
              batch_size=batch)
    noise = make_noise(batch, sub, seed, sched)
    t = time.perf_counter()
    step_loop(step, sub, states, noise, schedule=sched, row_runner=row, batch_size=batch)
    return (time.perf_counter() - t) * image.height / rows / batch


def run_pixelcnnpp_bench(batches: list[int], json_path=None, rows: int = 4, naive_pixels: int = 2,
                         threads: int | None = None, spec: dict | None = None, log=None) -> list[dict]:
    """Export PP32 (or ``spec``), time naive and cached ORT sampling per batch, print the table."""
    import onnxruntime as ort

    from pixelrt.export.onnx_export import export_full
    from pixelrt.export.pixelcnnpp_export import export_cached_graphs
    from pixelrt.runtime.ort_backend import OrtBackend

    log = log or (lambda s: print(s, flush=True))
    spec = spec or PP32
    image = spec["image"]
    if not batches or min(batches) < 1:
        raise PixelrtError(f"batch sizes must be positive integers, got {batches}")
    step_rows = 2 ** (spec["config"]["resolutions"] - 1)
    if rows < 1 or rows > image.height or naive_pixels < 1:
        raise PixelrtError(f"--rows must be in 1..{image.height} and naive pixels at least 1")
    model = build(spec)
    K = image.channels * (model.config.mixtures + 1)
    records = []
    with tempfile.TemporaryDirectory(prefix="pixelrt-bench-pp-") as tmp:
        root = Path(tmp)
        log(f"exporting PixelCNN++ {'x'.join(map(str, image.shape))} (naive, row and step graphs; takes a minute)")
        export_naive(model, image, root / "naive.onnx")
        states, sched, _, _ = export_cached_graphs(model, image, root)
        export_full(model, image.shape, root / "full.onnx")
        opts = {"threads": threads or 0}
        with OrtBackend(root / "naive.onnx", **opts) as naive, OrtBackend(root / "step.onnx", **opts) as step, \
                OrtBackend(root / "row.onnx", **opts) as row:
            for b in batches:
                log(f"[batch {b}] naive ORT: {naive_pixels} of {image.height * image.width} pixels, extrapolated")
                n_sec = time_naive(naive, image, b, K, naive_pixels)
                log(f"[batch {b}] cached ORT: {rows} of {image.height} rows, extrapolated")
                c_sec = time_cached(step, row, image, states, sched, b, rows)
                records.append({"model": "pp32", "shape": "x".join(map(str, image.shape)), "batch": b, "naive_ms_per_image": n_sec * 1e3,
                                "cached_ms_per_image": c_sec * 1e3, "speedup": n_sec / c_sec,
                                "published_gpu_speedup": PUBLISHED_SPEEDUP.get(b), "rows_timed": rows,
                                "naive_pixels_timed": naive_pixels, "height": image.height,
                                "rows_cover_every_level": rows % step_rows == 0, "config": spec["config"],
                                "onnxruntime": ort.__version__, "cpu_count": os.cpu_count(), "ort_threads": threads or 0,
                                "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else 0.0,
                                "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    log(format_report(records))
    if json_path is not None:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmpf = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(records, f, indent=2)
        os.replace(tmpf, path)
        log(f"wrote {len(records)} records to {json_path}")
    return records


def format_report(records: list[dict]) -> str:
    head = f"{'batch':>5} {'naive ms/image':>15} {'cached ms/image':>16} {'speed-up':>9} {'published (GPU)':>16}"
    lines = [f"PixelCNN++ {records[0]['shape']} (random weights), ONNX Runtime CPU: naive vs cached sampling", head,
             "-" * len(head)]
    for r in records:
        pub = f"{r['published_gpu_speedup']:.0f}x" if r["published_gpu_speedup"] else "-"
        lines.append(f"{r['batch']:5d} {r['naive_ms_per_image']:15.1f} {r['cached_ms_per_image']:16.2f} "
                     f"{r['speedup']:8.1f}x {pub:>16}")
    r0 = records[0]
    lines.append(f"naive: {r0['naive_pixels_timed']} pixels timed per batch, scaled to {r0['height']}x{r0['height']}; "
                 f"cached: {r0['rows_timed']} of {r0['height']} rows timed, scaled to the full height")
    load, cpus = max(r["load_avg_1m"] for r in records), r0["cpu_count"] or 1
    if load > cpus:
        lines.append(f"warning: 1-min load average reached {load:.1f} on {cpus} CPUs; timings are noisy, re-run idle")
    return "\n".join(lines)
