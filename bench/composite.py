"""Sampling through a composite bundle, naive vs cached, in one run: the ``composite`` measurement.

* naive (PyTorch): every autoregressive stage's full path re-run per sub-pixel, the first ``naive_rows``
  rows of each timed and scaled to its height, as in the step-loop bench;
* cached (ONNX Runtime): the whole bundle through the runtime's own sampler, best of two whole-image
  runs after a warm-up, sessions opened once.

What a stage is comes from the kind (``SAMPLERS``): a Multi-Scale PixelRNN has stage 1 on the coarse image,
the cond graph once per image, then stage 2 given it (naive: stage 2 with a coarse image held fixed); a
PixelVAE has the features graph once per latent, then the conditioned Gated PixelCNN one sub-pixel at a
time (the features graph's share of the cached time is reported beside). Ratios within one run are what
to compare on a loaded machine; bench never asserts a time.
"""
from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

import torch

from pixelrt.bench.common import _best_of, export_temporary, random_images, set_threads, write_records
from pixelrt.bench.specs import BenchSpec, multiscale_spec, pixelvae_spec
from pixelrt.bundle import ImageSpec
from pixelrt.errors import PixelrtError


def _ort(bundle, name: str, threads: int | None):
    from pixelrt.runtime.ort_backend import OrtBackend

    return OrtBackend(bundle.graph_path(name), threads=threads or 0)


def _multiscale(model, bundle, spec: BenchSpec, threads: int | None, stack: contextlib.ExitStack):
    """(naive(batch, rows), cached(batch)) for a Multi-Scale PixelRNN bundle: seconds per image."""
    from pixelrt.bench.autoregressive import time_naive
    from pixelrt.models.multiscale import GivenCoarse
    from pixelrt.runtime.multiscale import open_multiscale, sample_multiscale

    image, seed = spec.image, spec.seed
    C, H, W = image.shape
    coarse = ImageSpec(C, H // 2, W // 2, image.levels)
    ms = open_multiscale(bundle)
    given = GivenCoarse(model, torch.zeros(1, C, H // 2, W // 2, dtype=torch.uint8)).eval()
    opened = {"step1": (stack.enter_context(_ort(ms.stage1, "step", threads)), None),
              "cond": stack.enter_context(_ort(ms.top, "cond", threads)),
              "step2": (stack.enter_context(_ort(ms.stage2, "step", threads)), None)}

    def naive(b: int, rows: int) -> float:
        return time_naive(model.stage1, coarse, b, rows, seed=seed) + time_naive(given, image, b, rows, seed=seed)

    def cached(b: int) -> tuple[float, dict]:
        sample_multiscale(ms, b, seed, batch_size=b, backends=opened)  # warm-up
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            sample_multiscale(ms, b, seed, batch_size=b, backends=opened)
            best = min(best, time.perf_counter() - t)
        return best / b, {}

    return naive, cached


def _pixelvae(model, bundle, spec: BenchSpec, threads: int | None, stack: contextlib.ExitStack):
    """(naive(batch, rows), cached(batch)) for a PixelVAE bundle: z -> image, seconds per image."""
    from pixelrt.models.pixelvae import CONTEXT
    from pixelrt.models.reference import naive_sample
    from pixelrt.runtime.pixelvae import decode_latents, features, open_pixelvae, pixelvae_noise

    image, seed = spec.image, spec.seed
    C, H, W = image.shape
    pv = open_pixelvae(bundle)
    pc = pv.pixelcnn
    opened = {"features": stack.enter_context(_ort(pv.top, "features", threads)),
              "step": (stack.enter_context(_ort(pc, "step", threads)),
                       stack.enter_context(_ort(pc, pc.step_schedule.row_graph, threads)))}

    def naive(b: int, rows: int) -> float:
        z, noise = pixelvae_noise(pv, b, seed)
        rows = min(rows, H)
        with torch.inference_mode():
            model.pixelcnn.logits_from_float(torch.zeros(b, C, H, W), cond=model.cond(torch.from_numpy(z)))

            def once():
                cond = model.cond(torch.from_numpy(z)).numpy()
                naive_sample(model.pixelcnn, noise, image.levels, rows=rows, context={CONTEXT: cond})
            dt = _best_of(once, 3, 4.0)
        return dt * H / rows / b

    def cached(b: int) -> tuple[float, dict]:
        z, noise = pixelvae_noise(pv, b, seed)
        decode_latents(pv, opened, z, noise, batch_size=b)  # warm-up
        best = _best_of(lambda: decode_latents(pv, opened, z, noise, batch_size=b), 2, 0.0)
        feat = _best_of(lambda: features(opened["features"], z, CONTEXT), 5, 1.0)
        return best / b, {"features_share": feat / best}

    return naive, cached


# kind -> the two samplers timed for its bundle
SAMPLERS = {"multiscale": _multiscale, "pixelvae": _pixelvae}


def run_composite_bench(spec: BenchSpec, batches: list[int], naive_rows: int = 1, threads: int | None = None,
                        json_path=None, log=None) -> list[dict]:
    """ms per image: naive (PyTorch) vs cached (the whole bundle in ORT) at each batch size; prints a table."""
    from pixelrt.models import get_model

    log = log or (lambda s: print(s, flush=True))
    if not batches or min(batches) < 1 or naive_rows < 1:
        raise PixelrtError("batch sizes and --naive-rows must be positive integers")
    kind = get_model(spec.family).kind
    if kind not in SAMPLERS:
        raise PixelrtError(f"the composite bench times {', '.join(SAMPLERS)} bundles, not {spec.family!r}")
    set_threads(threads)
    model, image = spec.build(), spec.image
    C, H, W = image.shape
    records = []
    with tempfile.TemporaryDirectory(prefix=f"pixelrt-bench-{spec.family}-") as tmp, contextlib.ExitStack() as stack:
        log(f"exporting a {spec.family} bundle ({C}x{H}x{W}, {image.levels} levels, random weights)")
        bundle = export_temporary(model, image, random_images(image, 2, spec.seed), Path(tmp), "b")
        naive, cached = SAMPLERS[kind](model, bundle, spec, threads, stack)
        for b in batches:
            log(f"[batch {b}] naive torch, {naive_rows} row(s) of each stage ...")
            records.append(_rec(spec, "torch", "naive", b, naive(b, naive_rows)))
            log(f"[batch {b}] cached ort, whole image ...")
            sec, extra = cached(b)
            records.append({**_rec(spec, "ort", "cached", b, sec), **extra})
    log(format_composite_report(records))
    write_records(json_path, records, log)
    return records


def run_ms_bench(batches: list[int], naive_rows: int = 1, threads: int | None = None, seed: int = 0,
                 image: ImageSpec | None = None, config: dict | None = None, log=None) -> list[dict]:
    """The multi-scale row (``pixelrt bench --model multiscale``), or one on another image / config."""
    from pixelrt.bench.specs import MULTISCALE16

    spec = multiscale_spec(MULTISCALE16.name, image or MULTISCALE16.image, config, seed)
    return run_composite_bench(spec, batches, naive_rows, threads, log=log)


def run_pixelvae_bench(batches: list[int], naive_rows: int = 1, threads: int | None = None, seed: int = 0,
                       image: ImageSpec | None = None, overrides: dict | None = None, log=None) -> list[dict]:
    """The PixelVAE row (``pixelrt bench --model pvae28``), or one on another image / config overrides."""
    from pixelrt.bench.specs import PVAE28

    spec = pixelvae_spec(PVAE28.name, image or PVAE28.image, overrides, seed)
    return run_composite_bench(spec, batches, naive_rows, threads, log=log)


def _rec(spec: BenchSpec, runtime, method, batch, seconds) -> dict:
    return {"model": spec.name, "runtime": runtime, "method": method, "batch": batch, "ms_per_image": seconds * 1e3,
            "image": list(spec.image.shape), "levels": spec.image.levels, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def format_composite_report(records: list[dict]) -> str:
    naive = {r["batch"]: r["ms_per_image"] for r in records if r["method"] == "naive"}
    shares = any("features_share" in r for r in records)
    mw = max(7, *(len(r["model"]) for r in records))
    head = f"{'model':{mw}s} {'runtime':7s} {'method':7s} {'batch':>5s} {'ms/image':>11s} {'vs naive':>9s}" + \
        (f" {'features':>9s}" if shares else "")
    lines = [head, "-" * len(head)]
    for r in records:
        share = (f" {100 * r['features_share']:8.2f}%" if "features_share" in r else f" {'-':>9s}") if shares else ""
        lines.append(f"{r['model']:{mw}s} {r['runtime']:7s} {r['method']:7s} {r['batch']:5d} {r['ms_per_image']:11.2f} "
                     f"{naive[r['batch']] / r['ms_per_image']:8.1f}x{share}")
    lines.append("naive: first row(s) of each stage timed, extrapolated to its height; cached: the whole bundle"
                 + (" (features graph, step and row graphs); features: its share of that" if shares else ""))
    return "\n".join(lines)
