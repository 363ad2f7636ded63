"""`pixelrt bench`: time naive vs cached sampling on a fixed reference model, and say how
close the cached step graph gets to this CPU's matmul peak.

Why it is shaped this way:

* The reference model is data (``REF28``), so the number in an issue or a commit
  message ("ORT cached 42x naive") always means the same network, and tests can
  pass a tiny spec through the same code path.
* Naive sampling re-runs the whole image per sub-pixel, so every row costs the
  same: timing ``naive_rows`` rows and scaling by H / naive_rows is exact up to
  noise, and turns minutes into seconds. Cached sampling may be extrapolated the
  same way (``rows``): the step state only depends on the width, so a shorter
  ImageSpec drives the same graph and state specs.
* FLOPs are counted from the model config (2 x MACs of the matmuls the step
  graph really runs, zero-padded window taps included), and the peak is measured
  in the same run, so the peak fraction is comparable across machines.
* Bench is measurement, not a test: targets are reported as met / not met and
  never raise.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from pixelrt.errors import PixelrtError
from pixelrt.models import PixelCNN, PixelCNNConfig
from pixelrt.bundle import ImageSpec

TARGET_SPEEDUP = 25.0        # ORT cached vs naive, batch 1 (from the issue)
TARGET_PEAK_FRACTION = 0.15  # ORT cached at batch 64, share of the measured matmul peak


@dataclass(frozen=True)
class BenchSpec:
    """A benchmark model: PixelCNN config kwargs, image geometry and weight seed."""

    name: str
    config: dict = field(hash=False)
    image: ImageSpec
    seed: int = 0
    family: str = "pixelcnn"  # registered model name

    def build(self) -> PixelCNN:
        torch.manual_seed(self.seed)
        if self.family != "pixelcnn":
            from pixelrt.models import get_model

            entry = get_model(self.family)
            return entry.build(entry.make_config(**self.config)).eval()
        return PixelCNN(PixelCNNConfig(**self.config)).eval()


REF28 = BenchSpec("ref28", dict(channels=1, levels=256, hidden=64, blocks=8, head_hidden=64),
                  ImageSpec(1, 28, 28, 256))
MODELS = {"ref28": REF28}


def _gated28():
    from pixelrt.export.gated_bench import gated28

    return gated28()


MODELS["gated28"] = None  # built lazily by _spec (its FLOP counts live in export/gated_bench.py)


def _spec(name: str) -> BenchSpec:
    return _gated28() if name == "gated28" else MODELS[name]


def _flops(spec: BenchSpec, cfg) -> tuple[int, int]:
    """(cached step, dense full forward) FLOPs per pixel of the spec's family."""
    if spec.family == "gated":
        from pixelrt.export import gated_bench

        return gated_bench.step_flops_per_pixel(cfg), gated_bench.dense_flops_per_pixel(cfg)
    return step_flops_per_pixel(cfg), dense_flops_per_pixel(cfg)


# -- work and peak ---------------------------------------------------------------
def step_flops_per_pixel(cfg: PixelCNNConfig) -> int:
    """FLOPs (2 x MACs) the cached step graph executes per pixel.

    Per step: input conv centre C*w + window rows*k0*C*w (the window matmul covers all
    (k0//2+1)*k0 taps, the zeroed ones too); per block reduce w*h, centre h*h, window
    (k//2+1)*k*h*h, expand h*w (h = w/2); head w*m + m*C*L. Every sub-pixel step runs the
    whole network, so a pixel costs C steps.
    """
    C, w, h, m = cfg.channels, cfg.hidden, cfg.hidden // 2, cfg.head_hidden
    k0, k = cfg.input_kernel, cfg.block_kernel
    macs = C * w + (k0 // 2 + 1) * k0 * C * w
    macs += cfg.blocks * (w * h + h * h + (k // 2 + 1) * k * h * h + h * w)
    macs += w * m + m * C * cfg.levels
    return 2 * macs * C


def dense_flops_per_pixel(cfg: PixelCNNConfig) -> int:
    """FLOPs per pixel of one full-path forward with dense k x k kernels (masks not exploited).

    One forward yields every channel's logits, so there is no factor C here. This is what
    the naive sampler pays per pixel of the image, once per sub-pixel it samples.
    """
    C, w, h, m = cfg.channels, cfg.hidden, cfg.hidden // 2, cfg.head_hidden
    k0, k = cfg.input_kernel, cfg.block_kernel
    macs = k0 * k0 * C * w + cfg.blocks * (w * h + k * k * h * h + h * w) + w * m + m * C * cfg.levels
    return 2 * macs


def measure_peak_gflops(n: int = 1024, repeats: int = 10) -> float:
    """float32 n x n @ n x n numpy matmul, best of ``repeats`` after a warm-up: GFLOP/s (2 n^3 / t)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2.0 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _best_of(fn, repeats: int, budget_s: float) -> float:
    """Min over up to ``repeats`` runs, stopping once another run would exceed ``budget_s``."""
    times = [_timed(fn)]
    while len(times) < repeats and sum(times) + times[-1] <= budget_s:
        times.append(_timed(fn))
    return min(times)


# -- timers ------------------------------------------------------------------------
def time_naive(model: PixelCNN, image: ImageSpec, batch: int, rows: int, repeats: int = 3,
               budget_s: float = 4.0, seed: int = 0) -> float:
    """Seconds per image for naive sampling, timing ``rows`` rows and scaling to the full height.

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


def time_cached(runner, image: ImageSpec, state, batch: int, rows: int, repeats: int = 3,
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
    dt = _best_of(lambda: step_loop(runner, sub, state, noise, **loop), repeats, budget_s)
    return dt * image.height / rows / batch


# -- the run -------------------------------------------------------------------------
def run_bench(batches: list[int], json_path: str | os.PathLike | None = None, naive_rows: int = 1,
              rows: int | None = None, model: str = "ref28", spec: BenchSpec | None = None,
              log=None, threads: int | None = None, precisions: tuple[str, ...] = ("fp32",)) -> list[dict]:
    """Time naive (torch), cached (torch) and cached (ORT) sampling at each batch; print a table.

    ``spec`` overrides the named model (tests use a tiny one). Returns the records that
    ``json_path`` (if given) receives, written atomically. ``log`` gets progress lines and
    the table (default: print, flushed, since single measurements take tens of seconds).
    ``threads`` pins PyTorch's and ONNX Runtime's intra-op threads (default: each library's own).
    ``precisions`` adds ORT cached rows for FP16 / INT8 copies of the bundle (``pixelrt calibrate``'s
    code, calibrated on the reference batch: bench measures speed, not accuracy).
    """
    import onnxruntime as ort

    from pixelrt.export.bundle_writer import export_bundle
    from pixelrt.models.reference import TorchStepRunner
    from pixelrt.runtime.ort_backend import OrtBackend

    log = log or (lambda s: print(s, flush=True))
    if spec is None:
        if model not in MODELS:
            raise PixelrtError(f"unknown bench model {model!r}; choose one of {', '.join(MODELS)}")
        spec = _spec(model)
    if not batches or min(batches) < 1:
        raise PixelrtError(f"batch sizes must be positive integers, got {batches}")
    if naive_rows < 1 or (rows is not None and rows < 1):
        raise PixelrtError("--naive-rows and --rows must be at least 1")
    if threads is not None:
        if threads < 1:
            raise PixelrtError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    image, H = spec.image, spec.image.height
    net = spec.build()
    cfg = net.config
    step_fpp, dense_fpp = _flops(spec, cfg)
    naive_fpp = dense_fpp * image.height * image.width * image.channels  # one full forward per sub-pixel
    cached_rows, naive_rows = min(rows or H, H), min(naive_rows, H)
    log("measuring the matmul peak (float32 1024^3 numpy, best of 10)")
    peak = measure_peak_gflops()
    common = {"model": spec.name, "peak_gflops": round(peak, 2),
              "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "torch": torch.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__,
              "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "ort_threads": threads or 0,
              "machine": platform.machine()}
    records: list[dict] = []

    def record(runtime, method, batch, seconds, fpp, timed_rows, precision="fp32"):
        gflops = fpp * image.height * image.width / seconds / 1e9
        records.append({**common, "runtime": runtime, "method": method, "batch": batch, "precision": precision,
                        "ms_per_image": seconds * 1e3, "flops_per_pixel": fpp, "peak_fraction": gflops / peak,
                        "gflops": gflops, "dense_flops_per_pixel": dense_fpp, "step_flops_per_pixel": step_fpp,
                        "rows_timed": timed_rows, "height": H, "load_avg_1m": round(_load(), 2),
                        "extrapolated_from_rows": timed_rows if timed_rows < H else None})

    from contextlib import ExitStack

    with tempfile.TemporaryDirectory(prefix="pixelrt-bench-") as tmp, ExitStack() as stack:
        log(f"exporting {spec.name} to a temporary bundle")
        x_ref = np.random.default_rng(0).integers(0, image.levels, (4, *image.shape)).astype(np.uint8)
        bundle = export_bundle(net, image, x_ref, Path(tmp) / spec.name, log=lambda s: None).bundle
        torch_runner = TorchStepRunner(net)
        reduced = _reduced_bundles(bundle, [p for p in precisions if p != "fp32"], x_ref, Path(tmp), log)
        sched = bundle.step_schedule
        rows_torch = rows_ort = None
        if sched.row_graph:
            from pixelrt.models.reference import TorchRowRunner

            rows_torch = TorchRowRunner(net)
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
                for precision, rb in reduced.items():
                    log(f"[batch {b}] cached ort {precision}, {cached_rows} of {H} rows ...")
                    with OrtBackend(rb.graph_path("step"), threads=threads or 0) as runner:
                        sec = time_cached(runner, image, rb.state, b, cached_rows, seed=spec.seed)
                    record(f"ort-{precision}", "cached", b, sec, step_fpp, cached_rows, precision)
    log(format_report(records, peak))
    if json_path is not None:
        _write_json_atomic(Path(json_path), records)
        log(f"wrote {len(records)} records to {json_path}")
    return records


def format_report(records: list[dict], peak: float) -> str:
    """The table, the measured peak, and the issue's two targets with measured values."""
    naive = {r["batch"]: r["ms_per_image"] for r in records if r["method"] == "naive"}
    head = f"{'model':8s} {'runtime':8s} {'method':7s} {'batch':>5s} {'ms/image':>11s} {'vs naive':>9s} " \
           f"{'GFLOP/s':>8s} {'of peak':>8s}"
    lines, notes = [head, "-" * len(head)], set()
    for r in records:
        mark = "*" if r["extrapolated_from_rows"] else " "
        if r["extrapolated_from_rows"]:
            notes.add(f"* {r['method']}: timed {r['extrapolated_from_rows']} of {r['height']} rows, "
                      f"extrapolated linearly to the full image")
        speed = naive[r["batch"]] / r["ms_per_image"] if r["batch"] in naive else float("nan")
        lines.append(f"{r['model']:8s} {r['runtime']:8s} {r['method']:7s} {r['batch']:5d} "
                     f"{r['ms_per_image']:10.2f}{mark} {speed:8.1f}x {r['gflops']:8.2f} "
                     f"{100 * r['peak_fraction']:7.2f}%")
    lines += sorted(notes)
    r0 = records[0]
    lines.append(f"FLOPs/pixel: cached step {r0['step_flops_per_pixel']:,}; dense full forward "
                 f"{r0['dense_flops_per_pixel']:,} (naive pays it over the whole image per sub-pixel)")
    lines.append(f"measured peak: {peak:.1f} GFLOP/s (float32 1024^3 numpy matmul, best of 10)")
    fp32 = {r["batch"]: r["ms_per_image"] for r in records if r["runtime"] == "ort"}
    for r in records:
        if r.get("precision", "fp32") != "fp32" and r["batch"] in fp32:
            lines.append(f"ORT step sampling, batch {r['batch']}: {r['precision']} takes "
                         f"{r['ms_per_image'] / fp32[r['batch']]:.2f}x the fp32 time (same run)")
    load, cpus = max(r["load_avg_1m"] for r in records), r0["cpu_count"] or 1
    if load > cpus:
        lines.append(f"warning: 1-min load average reached {load:.1f} on {cpus} CPUs; other processes compete "
                     f"for the cores, which slows small multi-threaded ops (naive at batch 1) most: re-run idle")
    ort = {r["batch"]: r for r in records if r["runtime"] == "ort"}
    targets = [(f"ORT cached >= {TARGET_SPEEDUP:.0f}x faster than naive at batch 1", 1, TARGET_SPEEDUP,
                lambda r: naive[1] / r["ms_per_image"], "{:.1f}x"),
               (f"ORT cached >= {TARGET_PEAK_FRACTION:.0%} of measured peak at batch 64", 64, TARGET_PEAK_FRACTION,
                lambda r: r["peak_fraction"], "{:.1%}")]
    for text, b, goal, value, fmt in targets:
        if b in ort and b in naive:
            v = value(ort[b])
            lines.append(f"target: {text}: {fmt.format(v)} -> {'met' if v >= goal else 'not met'}")
        else:
            lines.append(f"target: {text}: not measured (batch {b} not run)")
    return "\n".join(lines)


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


def _load() -> float:
    """1-minute load average (0 where the OS has none): a busy machine skews these timings."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def _write_json_atomic(path: Path, records: list[dict]) -> None:
    """tmp file in the same directory + os.replace: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(records, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run_gpu_bench(runtimes: str, batches: list[int], model: str = "ref28", rows: int | None = None,
                  json_path=None, log=None) -> list[dict]:
    """`pixelrt bench --runtime ...`: the bench model exported once, timed on GPU runtimes next to ORT CPU
    (runtime/gpu_bench.py). Every runtime is checked before the export: without CUDA, one clear error."""
    from pixelrt.export.bundle_writer import export_bundle
    from pixelrt.runtime.gpu_bench import bench_bundle, parse_runtimes, require

    log = log or (lambda s: print(s, flush=True))
    names = parse_runtimes(runtimes)
    if model not in MODELS:
        raise PixelrtError(f"--runtime benchmarks {', '.join(MODELS)}, not {model!r}")
    for name in names:
        log(f"{name}: {require(name)}")
    spec = _spec(model)
    with tempfile.TemporaryDirectory(prefix="pixelrt-gpu-bench-") as tmp:
        log(f"exporting {spec.name} to a temporary bundle")
        x_ref = np.random.default_rng(0).integers(0, spec.image.levels, (4, *spec.image.shape)).astype(np.uint8)
        bundle = export_bundle(spec.build(), spec.image, x_ref, Path(tmp) / spec.name, log=lambda s: None).bundle
        return bench_bundle(bundle, names, batches, rows=rows, name=spec.name, log=log, json_path=json_path)
