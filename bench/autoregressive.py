"""Autoregressive sampling, naive vs cached: the ``step-loop`` and ``naive-graph`` measurements.

Why it is shaped this way:

* The bench model is data (a row of ``bench/specs.py``), so the number in an issue or a commit
  message ("ORT cached 42x naive") always means the same network, and tests can pass a tiny spec
  through the same code path.
* Naive sampling re-runs the whole image per sub-pixel, so every row costs the same: timing
  ``naive_rows`` rows and scaling by H / naive_rows is exact up to noise, and turns minutes into
  seconds. Cached sampling may be extrapolated the same way (``rows``): the step state only depends
  on the width, so a shorter ImageSpec drives the same graph and state specs.
* FLOPs are counted from the model config where the family's counts are written down
  (``bench/flops.py``: 2 x MACs of the matmuls the step graph really runs, zero-padded window taps
  included), and the peak is measured in the same run, so the peak fraction is comparable across
  machines.
* ``naive-graph`` (PixelCNN++): the naive sampler is an ONNX graph that re-runs the whole network on
  the whole image for every pixel and samples that pixel inside the graph (the same sampler as the
  step graph); both it and the bundle's row + step loop run in ORT, beside the published Fast
  PixelCNN++ GPU speed-ups (Ramachandran et al. 2017: 2x, 6x, 18x, 61x at batch 1, 4, 16, 64). The
  ratios, not the milliseconds, are what compares with the paper's GPU numbers.
* Bench is measurement, not a test: targets are reported as met / not met and never raise.
"""
from __future__ import annotations

import os
import platform
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pixelrt.bench.common import _best_of, _load, export_temporary, random_images, set_threads, write_records
from pixelrt.bench.flops import flops_per_pixel, wave_flops_per_pixel
from pixelrt.bench.specs import PP32, STEP_LOOP, BenchSpec, bench_spec
from pixelrt.bench.step_report import format_report
from pixelrt.bench.step_speed import ort_peak_gflops, peak_gflops, state_bytes_per_image, step_speed_report
from pixelrt.bundle import ImageSpec
from pixelrt.errors import PixelrtError

PUBLISHED_SPEEDUP = {1: 2.0, 4: 6.0, 16: 18.0, 64: 61.0}  # Fast PixelCNN++, GPU, vs naive


# -- timers ------------------------------------------------------------------------
def time_naive(model, image: ImageSpec, batch: int, rows: int, repeats: int = 3,
               budget_s: float = 4.0, seed: int = 0) -> float:
    """Seconds per image for naive sampling in PyTorch, timing ``rows`` rows and scaling to the full height.

    Warm-up is one full forward pass (a whole warm-up run would double the slowest
    measurement); repeats only while cheap, as in :func:`time_cached`.
    """
    from pixelrt.models.reference import naive_sample
    from pixelrt.runtime.sampler import make_noise

    rows = min(rows, image.height)
    noise = make_noise(batch, image, seed)
    with torch.inference_mode():
        model.logits_from_float(model.normalize(torch.zeros(batch, *image.shape)))
    dt = _best_of(lambda: naive_sample(model, noise, image.levels, rows=rows), repeats, budget_s)
    return dt * image.height / rows / batch


# Best of up to 7 runs of a step loop (within ``budget_s``): the matmul peak it is compared with is a best of
# 10, and on this shared machine a best of 3 could catch only a slow moment of the host (docs/architecture.md).
# Runs cheaper than that go on until they span LOOP_SPAN_S: 7 runs of a 11 ms image fit in one burst of load.
LOOP_REPEATS = 7
LOOP_SPAN_S = 1.0


def time_cached(runner, image: ImageSpec, state, batch: int, rows: int, repeats: int = LOOP_REPEATS,
                budget_s: float = 4.0, seed: int = 0, schedule=None, row_runner=None) -> float:
    """Seconds per image for ``step_loop(runner, ...)`` over ``rows`` rows, scaled to the full height.

    One warm-up row first (session/allocator/kernel caches), then the best of up to
    ``repeats`` runs, stopping early once ``budget_s`` is spent: repeats where cheap only.
    """
    from pixelrt.runtime.sampler import make_noise, step_loop

    rows = min(rows, image.height)
    sub = ImageSpec(image.channels, rows, image.width, image.levels)
    warm = ImageSpec(image.channels, 1, image.width, image.levels)
    loop = dict(batch_size=batch, schedule=schedule, row_runner=row_runner)  # row graph: e.g. gated's vertical stack
    step_loop(runner, warm, state, make_noise(batch, warm, seed, schedule), **loop)
    noise = make_noise(batch, sub, seed, schedule)
    dt = _best_of(lambda: step_loop(runner, sub, state, noise, **loop), repeats, budget_s, LOOP_SPAN_S)
    return dt * image.height / rows / batch


# -- step-loop: naive (PyTorch) vs cached (PyTorch, ORT) -------------------------------------
def run_bench(batches: list[int], json_path: str | os.PathLike | None = None, naive_rows: int = 1,
              rows: int | None = None, model: str = "ref28", spec: BenchSpec | None = None,
              log=None, threads: int | None = None, precisions: tuple[str, ...] = ("fp32",)) -> list[dict]:
    """Time naive (torch), cached (torch) and cached (ORT) sampling at each batch; print a table.

    ``spec`` overrides the named model (tests use a tiny one). Returns the records that
    ``json_path`` (if given) receives, written atomically. ``log`` gets progress lines and
    the table (default: print, flushed, since single measurements take tens of seconds).
    ``threads`` pins PyTorch's and ONNX Runtime's intra-op threads (default: each library's own).
    ``precisions`` adds ORT cached rows for FP16 / INT8 copies of the bundle (``pixelrt calibrate``'s
    code, calibrated on the reference batch: bench measures speed, not accuracy), where the spec has them.
    """
    import onnxruntime as ort

    from pixelrt.models.reference import TorchRowRunner, TorchStepRunner
    from pixelrt.runtime.ort_backend import OrtBackend

    log = log or (lambda s: print(s, flush=True))
    spec = spec or bench_spec(model, STEP_LOOP)
    if not batches or min(batches) < 1:
        raise PixelrtError(f"batch sizes must be positive integers, got {batches}")
    if naive_rows < 1 or (rows is not None and rows < 1):
        raise PixelrtError("--naive-rows and --rows must be at least 1")
    precisions = tuple(precisions)
    if not spec.reduced_precision and precisions != ("fp32",):  # calibrated copies are benchmarked on ref28
        log(f"note: --precisions applies to ref28; {spec.name} is timed in fp32 only")
        precisions = ("fp32",)
    set_threads(threads)
    image, H = spec.image, spec.image.height
    net = spec.build()
    step_fpp, dense_fpp = flops_per_pixel(spec.family, net.config)
    naive_fpp = None if dense_fpp is None else dense_fpp * image.height * image.width * image.channels
    cached_rows, naive_rows = min(rows or H, H), min(naive_rows, H)
    peak = peaks = ort_peak = None
    if step_fpp is not None:  # at ORT's thread count (like with like), and at 1 and 2 threads for the record
        log(f"measuring the matmul peak (float32 1024^3 numpy, best of 10) at {threads or 'default'}, 1 and 2 threads, "
            f"and ONNX Runtime's own MatMul at {threads or 'default'}")
        peak = peak_gflops(threads)
        peaks = {t: round(peak_gflops(t), 2) for t in (1, 2)}
        ort_peak = ort_peak_gflops(threads)
    common = {"model": spec.name, "peak_gflops": None if peak is None else round(peak, 2),
              "peak_gflops_by_threads": peaks, "ort_peak_gflops": None if ort_peak is None else round(ort_peak, 2),
              "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "torch": torch.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__,
              "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "ort_threads": threads or 0,
              "machine": platform.machine(), "image": list(image.shape), "levels": image.levels}
    records: list[dict] = []

    def record(runtime, method, batch, seconds, fpp, timed_rows, precision="fp32"):
        gflops = None if fpp is None else fpp * image.height * image.width / seconds / 1e9
        # the peak again, right after this row's timing (best of 3): on a shared host the machine's speed drifts
        # within a run, and this compares the row with the matmul under the same conditions
        near = None if gflops is None or method == "naive" else peak_gflops(threads, repeats=3)
        ort_near = None if near is None else ort_peak_gflops(threads, repeats=3)
        records.append({**common, "runtime": runtime, "method": method, "batch": batch, "precision": precision,
                        "ms_per_image": seconds * 1e3, "flops_per_pixel": fpp,
                        "us_per_step": None if method == "naive" else seconds * batch / steps * 1e6,
                        "peak_fraction": None if gflops is None else gflops / peak,
                        "peak_after_gflops": near, "peak_fraction_after": None if near is None else gflops / near,
                        "ort_peak_fraction": None if gflops is None else gflops / ort_peak,
                        "ort_peak_after_gflops": ort_near,
                        "ort_peak_fraction_after": None if ort_near is None else gflops / ort_near,
                        "gflops": gflops, "dense_flops_per_pixel": dense_fpp, "step_flops_per_pixel": step_fpp,
                        "rows_timed": timed_rows, "height": H, "load_avg_1m": round(_load(), 2),
                        "extrapolated_from_rows": timed_rows if timed_rows < H else None})
        return records[-1]

    with tempfile.TemporaryDirectory(prefix="pixelrt-bench-") as tmp, ExitStack() as stack:
        log(f"exporting {spec.name} to a temporary bundle")
        x_ref = random_images(image, 4)
        bundle = export_temporary(net, image, x_ref, Path(tmp), spec.name)
        steps = image.height * image.width * bundle.step_schedule.substeps_per_pixel  # step calls per image
        front = bundle.step_schedule.wavefront
        graphs = {g: bundle.graph_path(g) for g in ("step", bundle.step_schedule.row_graph, front and front.graph) if g}
        speed = step_speed_report(graphs, threads, log)
        common.update(step_nodes=speed["graphs"]["step"]["exported"],
                      step_nodes_optimized=speed["graphs"]["step"]["optimized"], floor_us=speed["floor_us"],
                      wave_floor_us=speed.get("wave_floor_us"),
                      floor_1_node_us=speed["floor_1_node_us"], graph_nodes=speed["graphs"],
                      state_bytes_per_image=state_bytes_per_image(bundle.state))
        torch_runner = TorchStepRunner(net, image=image)
        reduced = _reduced_bundles(bundle, [p for p in precisions if p != "fp32"], x_ref, Path(tmp), log)
        sched = bundle.step_schedule
        rows_torch = rows_ort = None
        if sched.row_graph:
            rows_torch = TorchRowRunner(net, image=image)
            rows_ort = stack.enter_context(OrtBackend(bundle.graph_path(sched.row_graph), threads=threads or 0))
        row_of = {"torch": rows_torch, "ort": rows_ort}
        with OrtBackend(bundle.graph_path("step"), threads=threads or 0) as ort_runner:
            for b in batches:
                log(f"[batch {b}] naive torch, {naive_rows} of {H} rows ...")
                sec = time_naive(net, image, b, naive_rows, seed=spec.seed)
                record("torch", "naive", b, sec, naive_fpp, naive_rows)
                for name, runner in (("torch", torch_runner), ("ort", ort_runner)):
                    log(f"[batch {b}] cached {name}, {cached_rows} of {H} rows ...")
                    sec = time_cached(runner, image, bundle.state, b, cached_rows, seed=spec.seed, schedule=sched,
                                      row_runner=row_of[name])
                    record(name, "cached", b, sec, step_fpp, cached_rows)
                if sched.wavefront is not None:
                    wave_fpp = wave_flops_per_pixel(net.config) if spec.family == "pixelcnn" else step_fpp
                    _wave_rows(bundle, threads, b, cached_rows, spec.seed, log, record, wave_fpp, image, step_fpp)
                for precision, rb in reduced.items():
                    log(f"[batch {b}] cached ort {precision}, {cached_rows} of {H} rows ...")
                    with OrtBackend(rb.graph_path("step"), threads=threads or 0) as runner:
                        sec = time_cached(runner, image, rb.state, b, cached_rows, seed=spec.seed)
                    record(f"ort-{precision}", "cached", b, sec, step_fpp, cached_rows, precision)
        if spec.scaling:  # cost vs image size: the same layer stack at growing sizes
            from pixelrt.bench.scaling import run_scaling

            records += run_scaling(spec, spec.scaling, batches, threads, Path(tmp), log, time_cached,
                                   bundles={H: bundle} if H == image.width else None, wave_timer=time_wave)
    log(format_report(records, peak))
    write_records(json_path, records, log)
    return records


def time_wave(runner, image: ImageSpec, bundle, batch: int, rows: int, repeats: int = LOOP_REPEATS,
              budget_s: float = 4.0, seed: int = 0) -> tuple[float, object]:
    """Seconds per image of the bundle's wavefront loop over ``rows`` rows (scaled to the full height), after
    a warm-up; and the last run's StepResult (to compare with the raster loop's images)."""
    from pixelrt.runtime.sampler import make_noise
    from pixelrt.runtime.wavefront import wave_loop

    rows = min(rows, image.height)
    sub = ImageSpec(image.channels, rows, image.width, image.levels)
    sched = bundle.step_schedule
    noise = make_noise(batch, sub, seed, sched)
    out = []
    run = lambda: out.append(wave_loop(runner, sub, bundle.state, sched, noise, batch_size=batch))  # noqa: E731
    run()
    dt = _best_of(run, repeats, budget_s, LOOP_SPAN_S)
    return dt * image.height / rows / batch, out[-1]


def _wave_rows(bundle, threads, b: int, cached_rows: int, seed: int, log, record, wave_fpp, image,
               step_fpp) -> None:
    """The wavefront loop at batch ``b`` (what `pixelrt sample` runs on ORT), and whether it samples the
    raster loop's images for the timed noise. Its FLOPs are the ones its graph runs (``wave_fpp``: the
    masked taps are not read); ``effective_peak_fraction`` counts the step graph's (``step_fpp``) instead."""
    from pixelrt.runtime.ort_backend import OrtBackend
    from pixelrt.runtime.sampler import make_noise, step_loop

    front, sched = bundle.step_schedule.wavefront, bundle.step_schedule
    log(f"[batch {b}] wavefront ort (lag {front.lag}), {cached_rows} of {image.height} rows ...")
    sub = ImageSpec(image.channels, min(cached_rows, image.height), image.width, image.levels)  # time_wave's
    with OrtBackend(bundle.graph_path(front.graph), threads=threads or 0) as wave, \
            OrtBackend(bundle.graph_path("step"), threads=threads or 0) as step:
        sec, got = time_wave(wave, image, bundle, b, cached_rows, seed=seed)
        ref = step_loop(step, sub, bundle.state, make_noise(b, sub, seed, sched), batch_size=b, schedule=sched)
    calls = front.calls(image.height, image.width) * bundle.step_schedule.substeps_per_pixel
    rec = record("ort", "wavefront", b, sec, wave_fpp, min(cached_rows, image.height))
    if step_fpp is not None and rec["peak_fraction"] is not None:
        rec["effective_peak_fraction"] = rec["peak_fraction"] * step_fpp / wave_fpp
    rec.update(us_per_call=sec * b / calls * 1e6, calls_per_image=calls, lag=front.lag,
               same_images_as_cached=float((ref.images == got.images).mean()),
               max_abs_logp_vs_cached=float(abs(ref.logp - got.logp).max()))
    log(f"  wavefront: {calls} calls per image instead of {rec['height'] * image.width * bundle.step_schedule.substeps_per_pixel}; "
        f"{rec['same_images_as_cached']:.1%} of sub-pixels as the raster loop samples, max |delta log p| "
        f"{rec['max_abs_logp_vs_cached']:.1e}")


def run_rnn_bench(model: str, batches: list[int], naive_rows: int = 1, rows: int | None = None,
                  spec: BenchSpec | None = None, threads: int | None = None, log=None) -> list[dict]:
    """The step-loop bench of a PixelRNN row (``rowlstm``, ``diagbilstm``; any step-loop row) or of ``spec``."""
    spec = spec or bench_spec(model, STEP_LOOP, "PixelRNN bench model")
    return run_bench(batches, naive_rows=naive_rows, rows=rows, spec=spec, threads=threads, log=log)


def _reduced_bundles(bundle, precisions: list[str], x: np.ndarray, tmp: Path, log) -> dict:
    """FP16 / INT8 copies of the bench bundle through `pixelrt calibrate`'s code (minmax for INT8)."""
    from pixelrt.calibration.calibrate import calibrate_bundle

    out = {}
    for precision in precisions:
        if precision not in ("fp16", "int8"):
            raise PixelrtError(f"unknown precision {precision!r} for bench; choose from fp32, fp16, int8")
        log(f"calibrating a {precision} copy of the bench bundle")
        out[precision] = calibrate_bundle(bundle.root, tmp / f"{bundle.root.name}-{precision}", precision, x[:1],
                                          calib_x=x, data_name="bench reference batch", method="minmax",
                                          teacher=1, samples=1, judge=False, log=lambda s: None).bundle
        from pixelrt.calibration.ort_inspect import executed_precision

        gemms = executed_precision(out[precision].graph_path("step"))["gemm_nodes"]
        log(f"  ORT CPU's optimized {precision} step graph runs its GEMMs as: "
            + ", ".join(f"{k} x{v}" for k, v in gemms.items()))
    return out


# -- naive-graph: the naive sampler as an ONNX graph vs the cached row + step loop, both in ORT ----------
class NaivePixel(nn.Module):
    """One pixel (row, col) sampled from a full forward pass over the whole image: O(image) per pixel."""

    def __init__(self, model):
        super().__init__()
        self.model, self.cfg = model, model.config

    def forward(self, x, row, col, force, noise):
        from pixelrt.models import logistic

        params = self.model.params_from_float(self.model.normalize(x))  # (B, P, H, W)
        p = params.index_select(2, row.reshape(1)).index_select(3, col.reshape(1))[:, :, 0, 0]
        return logistic.sample(p, noise, force, self.cfg.channels, self.cfg.mixtures, self.cfg.levels)


def export_naive(model, image: ImageSpec, path: Path) -> None:
    """``NaivePixel`` to ONNX (a bench-only graph, not part of any bundle); the exporter's chatter is shown
    only when it fails."""
    import contextlib
    import io
    import logging
    import warnings

    C, H, W = image.shape
    dim = torch.export.Dim("batch", min=1, max=65536)
    K = C * (model.config.mixtures + 1)
    args = (torch.zeros(2, C, H, W, dtype=torch.long), torch.tensor(1), torch.tensor(1),
            torch.full((2, C), -1, dtype=torch.long), torch.full((2, K), 0.5))
    buf = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._export", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf), \
                torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(NaivePixel(model), args, str(path), input_names=["x", "row", "col", "force", "noise"],
                              output_names=["value", "logp"],
                              dynamic_shapes=({0: dim}, None, None, {0: dim}, {0: dim}), dynamo=True, opset_version=20,
                              optimize=True, verbose=False, external_data=False)
    except Exception as e:  # noqa: BLE001 - surface the exporter's log with its error
        raise PixelrtError(f"ONNX export of the naive sampler failed: {e}\n--- exporter log ---\n"
                           f"{buf.getvalue()[-4000:]}") from e
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def time_naive_graph(backend, image: ImageSpec, batch: int, K: int, pixels: int, seed: int = 0) -> float:
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


def time_cached_once(step, row, image: ImageSpec, states, sched, batch: int, rows: int, seed: int = 0) -> float:
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
                         threads: int | None = None, spec: BenchSpec | None = None, log=None) -> list[dict]:
    """Export PP32 (or ``spec``), time naive and cached ORT sampling per batch, print the table.

    ``rows`` should be a multiple of 2**(resolutions-1) so every coarse level's share of the work is in the
    timed rows (default 4 of 32)."""
    import onnxruntime as ort

    from pixelrt.runtime.ort_backend import OrtBackend

    log = log or (lambda s: print(s, flush=True))
    spec = spec or PP32
    image = spec.image
    if not batches or min(batches) < 1:
        raise PixelrtError(f"batch sizes must be positive integers, got {batches}")
    step_rows = 2 ** (spec.config["resolutions"] - 1)
    if rows < 1 or rows > image.height or naive_pixels < 1:
        raise PixelrtError(f"--rows must be in 1..{image.height} and naive pixels at least 1")
    set_threads(threads)
    model = spec.build()
    K = image.channels * (model.config.mixtures + 1)
    records = []
    with tempfile.TemporaryDirectory(prefix="pixelrt-bench-pp-") as tmp:
        root = Path(tmp)
        log(f"exporting PixelCNN++ {'x'.join(map(str, image.shape))} (naive graph, then the bundle's full, row and "
            "step graphs; takes a minute)")
        export_naive(model, image, root / "naive.onnx")
        bundle = export_temporary(model, image, random_images(image, 2), root, spec.name)
        sched = bundle.step_schedule
        speed = step_speed_report({"step": bundle.graph_path("step"), "row": bundle.graph_path(sched.row_graph)},
                                  threads, log)
        opts = {"threads": threads or 0}
        with OrtBackend(root / "naive.onnx", **opts) as naive, OrtBackend(bundle.graph_path("step"), **opts) as step, \
                OrtBackend(bundle.graph_path(sched.row_graph), **opts) as row:
            for b in batches:
                log(f"[batch {b}] naive ORT: {naive_pixels} of {image.height * image.width} pixels, extrapolated")
                n_sec = time_naive_graph(naive, image, b, K, naive_pixels)
                log(f"[batch {b}] cached ORT: {rows} of {image.height} rows, extrapolated")
                c_sec = time_cached_once(step, row, image, bundle.state, sched, b, rows)
                records.append({"model": spec.name, "shape": "x".join(map(str, image.shape)), "batch": b,
                                "naive_ms_per_image": n_sec * 1e3,
                                "cached_ms_per_image": c_sec * 1e3, "speedup": n_sec / c_sec,
                                "cached_us_per_step": c_sec * b / (image.height * image.width) * 1e6,
                                "step_nodes": speed["graphs"]["step"]["exported"],
                                "step_nodes_optimized": speed["graphs"]["step"]["optimized"],
                                "graph_nodes": speed["graphs"], "floor_us": speed["floor_us"],
                                "floor_1_node_us": speed["floor_1_node_us"],
                                "state_bytes_per_image": state_bytes_per_image(bundle.state),
                                "published_gpu_speedup": PUBLISHED_SPEEDUP.get(b), "rows_timed": rows,
                                "naive_pixels_timed": naive_pixels, "height": image.height,
                                "rows_cover_every_level": rows % step_rows == 0, "config": spec.config,
                                "onnxruntime": ort.__version__, "cpu_count": os.cpu_count(), "ort_threads": threads or 0,
                                "load_avg_1m": round(_load(), 2),
                                "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    log(format_pixelcnnpp_report(records))
    write_records(json_path, records, log)
    return records


def format_pixelcnnpp_report(records: list[dict]) -> str:
    head = f"{'batch':>5} {'naive ms/image':>15} {'cached ms/image':>16} {'us/step':>9} {'speed-up':>9} " \
           f"{'published (GPU)':>16}"
    lines = [f"PixelCNN++ {records[0]['shape']} (random weights), ONNX Runtime CPU: naive vs cached sampling", head,
             "-" * len(head)]
    for r in records:
        pub = f"{r['published_gpu_speedup']:.0f}x" if r["published_gpu_speedup"] else "-"
        lines.append(f"{r['batch']:5d} {r['naive_ms_per_image']:15.1f} {r['cached_ms_per_image']:16.2f} "
                     f"{r.get('cached_us_per_step', float('nan')):9.1f} {r['speedup']:8.1f}x {pub:>16}")
    r0 = records[0]
    if "step_nodes" in r0:
        nodes = ", ".join(f"{g} {c['exported']} -> {c['optimized']}" for g, c in r0["graph_nodes"].items())
        lines.append(f"graph nodes (exported -> after ORT's optimiser, If branches included): {nodes}; ORT per-call "
                     f"floor (bound): 1 node {r0['floor_1_node_us']:.1f} us, {r0['step_nodes_optimized']} nodes "
                     f"{r0['floor_us']:.1f} us; loop state {r0['state_bytes_per_image'] / 1024:.1f} KiB per image")
    lines.append(f"naive: {r0['naive_pixels_timed']} pixels timed per batch, scaled to {r0['height']}x{r0['height']}; "
                 f"cached: {r0['rows_timed']} of {r0['height']} rows timed, scaled to the full height")
    load, cpus = max(r["load_avg_1m"] for r in records), r0["cpu_count"] or 1
    if load > cpus:
        lines.append(f"warning: 1-min load average reached {load:.1f} on {cpus} CPUs; timings are noisy, re-run idle")
    return "\n".join(lines)

