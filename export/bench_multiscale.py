"""`pixelrt bench --model multiscale`: naive vs cached sampling of a Multi-Scale PixelRNN.

Default widths, random weights, 1x16x16 at 256 levels (stage 1 on 8x8). Naive: both stages'
full paths re-run per sub-pixel in PyTorch (stage 2 with the coarse image fixed), the first
``naive_rows`` rows of each timed and scaled to the stage's height. Cached: the whole
multi-scale bundle in ONNX Runtime through runtime/multiscale.py (stage-1 step loop, cond
graph once per image, stage-2 step loop). Ratios are what to compare on a loaded machine.
"""
from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

import torch

from pixelrt.errors import PixelrtError
from pixelrt.bundle import ImageSpec

IMAGE = ImageSpec(1, 16, 16, 256)


def run_ms_bench(batches: list[int], naive_rows: int = 1, threads: int | None = None, seed: int = 0,
                 image: ImageSpec = IMAGE, config: dict | None = None, log=None) -> list[dict]:
    from pixelrt.export.bench import time_naive
    from pixelrt.export.multiscale_export import export_multiscale
    from pixelrt.models import get_model
    from pixelrt.models.multiscale import GivenCoarse
    from pixelrt.runtime.multiscale import open_multiscale, sample_multiscale

    log = log or (lambda s: print(s, flush=True))
    if not batches or min(batches) < 1 or naive_rows < 1:
        raise PixelrtError("batch sizes and --naive-rows must be positive integers")
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    entry = get_model("multiscale")
    model = entry.build(entry.make_config(**(config or dict(channels=image.channels, levels=image.levels)))).eval()
    C, H, W = image.shape
    coarse_img = ImageSpec(C, H // 2, W // 2, image.levels)
    x = torch.randint(0, image.levels, (2, C, H, W), dtype=torch.uint8).numpy()
    records = []
    with tempfile.TemporaryDirectory(prefix="pixelrt-bench-ms-") as tmp:
        log(f"exporting a multi-scale bundle ({C}x{H}x{W}, stage 1 {C}x{H // 2}x{W // 2}, random weights)")
        bundle, _ = export_multiscale(model, image, x, Path(tmp) / "b", log=lambda s: None)
        ms = open_multiscale(bundle)
        given = GivenCoarse(model, torch.zeros(1, C, H // 2, W // 2, dtype=torch.uint8)).eval()
        for b in batches:
            log(f"[batch {b}] naive torch, {naive_rows} row(s) of each stage ...")
            naive = (time_naive(model.stage1, coarse_img, b, naive_rows, seed=seed)
                     + time_naive(given, image, b, naive_rows, seed=seed))
            records.append(_rec("torch", "naive", b, naive, image))
            log(f"[batch {b}] cached ort, whole image ...")
            with _ort_backends(ms, threads) as opened:  # sessions opened once, as in the PixelRNN bench
                sample_multiscale(ms, b, seed, batch_size=b, backends=opened)  # warm-up
                best = float("inf")
                for _ in range(2):
                    t = time.perf_counter()
                    sample_multiscale(ms, b, seed, batch_size=b, backends=opened)
                    best = min(best, time.perf_counter() - t)
            records.append(_rec("ort", "cached", b, best / b, image))
    log(format_ms_report(records))
    return records


@contextlib.contextmanager
def _ort_backends(ms, threads: int | None):
    from pixelrt.runtime.ort_backend import OrtBackend

    def ort(bundle, name):
        return OrtBackend(bundle.graph_path(name), threads=threads or 0)

    with ort(ms.stage1, "step") as s1, ort(ms.top, "cond") as cond, ort(ms.stage2, "step") as s2:
        yield {"step1": (s1, None), "cond": cond, "step2": (s2, None)}


def _rec(runtime, method, batch, seconds, image) -> dict:
    return {"model": "multiscale16", "runtime": runtime, "method": method, "batch": batch,
            "ms_per_image": seconds * 1e3, "image": list(image.shape), "levels": image.levels}


def format_ms_report(records: list[dict]) -> str:
    naive = {r["batch"]: r["ms_per_image"] for r in records if r["method"] == "naive"}
    head = f"{'model':13s} {'runtime':7s} {'method':7s} {'batch':>5s} {'ms/image':>11s} {'vs naive':>9s}"
    lines = [head, "-" * len(head)]
    for r in records:
        lines.append(f"{r['model']:13s} {r['runtime']:7s} {r['method']:7s} {r['batch']:5d} "
                     f"{r['ms_per_image']:11.2f} {naive[r['batch']] / r['ms_per_image']:8.1f}x")
    lines.append("naive: first row(s) of each stage timed, extrapolated to its height; cached: the whole bundle")
    return "\n".join(lines)
