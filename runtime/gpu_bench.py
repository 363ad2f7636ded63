"""`pixelrt bench --runtime trt|ort-cuda|ort-cuda-graph|ort-trt`: step-loop sampling on a GPU runtime
next to ORT CPU, in the same run, on the same bundle (torch-free; export/bench.py exports ref28).

Each runtime samples the bundle with its own loop: ``trt`` runs the device-resident loop (the whole
image, CUDA graphs), the ORT providers run the host step loop (``--rows`` rows timed and scaled to the
image height when given). Reported per batch: microseconds per step (one step = one graph call for
the whole batch; H*W*S steps per image) and milliseconds per image. Best of ``repeats`` after one
warm-up run (which also builds TensorRT engines and captures CUDA graphs); printed, never asserted.
"""
from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from pixelrt.atomic import atomic_write_bytes
from pixelrt.errors import PixelrtError
from pixelrt.bundle import ImageSpec

GPU_RUNTIMES = ("trt", "ort-cuda", "ort-cuda-graph", "ort-trt")
EP = {"ort-cuda": "CUDAExecutionProvider", "ort-cuda-graph": "CUDAExecutionProvider",
      "ort-trt": "TensorrtExecutionProvider"}


def parse_runtimes(text: str) -> list[str]:
    names = [r.strip() for r in text.split(",") if r.strip()]
    bad = [r for r in names if r not in GPU_RUNTIMES]
    if not names or bad:
        raise PixelrtError(f"--runtime takes GPU runtimes ({', '.join(GPU_RUNTIMES)}), comma-separated; got {text!r} "
                           "(leave --runtime out for the CPU benchmark)")
    return names


def require(runtime: str) -> str:
    """One line describing the device ``runtime`` will use, or the PixelrtError saying what is missing.

    Called before anything is exported, so a machine without CUDA fails in a second with one message."""
    if runtime == "trt":
        from pixelrt.runtime.trt_backend import current_device

        device = current_device()  # TensorRT, cuda-python and a visible CUDA device, each named if missing
        return f"{device.gpu} (sm {device.compute_capability}), TensorRT {device.tensorrt}"
    import onnxruntime as ort

    from pixelrt.runtime.cuda_runtime import INSTALL

    have = ort.get_available_providers()
    if EP[runtime] not in have:
        raise PixelrtError(f"--runtime {runtime} needs ONNX Runtime's {EP[runtime]}, which this onnxruntime "
                           f"{ort.__version__} lacks (it has: {', '.join(have)}): no CUDA here; {INSTALL}")
    return f"onnxruntime {ort.__version__} {EP[runtime]}"


def _check_provider(runtime: str, step) -> None:
    """ORT falls back to the CPU silently when its CUDA provider cannot start: refuse to time that."""
    session = getattr(step, "session", None)
    if runtime in EP and session is not None and EP[runtime] not in session.get_providers():
        raise PixelrtError(f"--runtime {runtime}: ONNX Runtime could not start {EP[runtime]} on this machine (the "
                           f"session runs on {', '.join(session.get_providers())}); check `nvidia-smi`")


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def time_runtime(runtime: str, bundle, batch: int, rows: int | None = None, repeats: int = 3, seed: int = 0) -> dict:
    """Seconds per image and per step of ``runtime`` sampling ``bundle`` at ``batch``."""
    from pixelrt.runtime.backends import step_backends
    from pixelrt.runtime.sampler import bundle_loop, make_noise, step_loop
    from pixelrt.runtime.wavefront import WavefrontRunner, wave_loop

    img, sched = bundle.image, bundle.step_schedule
    with step_backends(runtime, bundle) as (step, row):
        _check_provider(runtime, step)
        if isinstance(step, WavefrontRunner):  # several pixels per call: as many rows as the raster loop
            timed = min(rows or img.height, img.height)
            sub = ImageSpec(img.channels, timed, img.width, img.levels)
            noise = make_noise(batch, sub, seed, sched)
            run = lambda: wave_loop(step.wave, sub, bundle.state, sched, noise, batch_size=batch)  # noqa: E731
        elif hasattr(step, "bundle_loop"):  # the device loop: whole images only
            timed = img.height
            noise = make_noise(batch, img, seed, sched)
            run = lambda: bundle_loop(step, row, bundle, noise, batch_size=batch)  # noqa: E731
        else:
            timed = min(rows or img.height, img.height)
            sub = ImageSpec(img.channels, timed, img.width, img.levels)
            noise = make_noise(batch, sub, seed, sched)
            run = lambda: step_loop(step, sub, bundle.state, noise, batch_size=batch, schedule=sched,  # noqa: E731
                                    row_runner=row)
        run()  # warm-up: sessions, engines (built or loaded from the cache), CUDA graphs
        seconds = _best(run, repeats) * img.height / timed
    steps = img.height * img.width * sched.substeps_per_pixel
    return {"runtime": runtime, "batch": batch, "us_per_step": 1e6 * seconds / steps,
            "ms_per_image": 1e3 * seconds / batch, "rows_timed": timed, "height": img.height}


def bench_bundle(bundle, runtimes: list[str], batches: list[int], rows: int | None = None, repeats: int = 3,
                 name: str = "bundle", log=print, json_path=None) -> list[dict]:
    """Time each runtime and ORT CPU at each batch on one bundle; print the table; return the records."""
    if not batches or min(batches) < 1:
        raise PixelrtError(f"batch sizes must be positive integers, got {batches}")
    if rows is not None and rows < 1:
        raise PixelrtError("--rows must be at least 1")
    records = []
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for runtime in [*runtimes, "ort"] if "ort" not in runtimes else runtimes:
        for b in batches:
            log(f"[{runtime}] batch {b} ...")
            records.append({"model": name, "timestamp": stamp, "cpu_count": os.cpu_count(),
                            **time_runtime(runtime, bundle, b, rows, repeats)})
    log(format_table(records))
    if json_path is not None:
        atomic_write_bytes(Path(json_path), (json.dumps(records, indent=2) + "\n").encode())
        log(f"wrote {len(records)} records to {json_path}")
    return records


def format_table(records: list[dict]) -> str:
    cpu = {r["batch"]: r["ms_per_image"] for r in records if r["runtime"] == "ort"}
    head = f"{'model':8s} {'runtime':15s} {'batch':>5s} {'us/step':>10s} {'ms/image':>10s} {'vs ORT CPU':>10s}"
    lines, notes = [head, "-" * len(head)], set()
    for r in records:
        mark = "*" if r["rows_timed"] < r["height"] else " "
        if mark == "*":
            notes.add(f"* timed {r['rows_timed']} of {r['height']} rows, scaled to the full image")
        speed = cpu[r["batch"]] / r["ms_per_image"] if r["batch"] in cpu else float("nan")
        label = "ort (CPU)" if r["runtime"] == "ort" else r["runtime"]
        lines.append(f"{r['model']:8s} {label:15s} {r['batch']:5d} {r['us_per_step']:10.1f} "
                     f"{r['ms_per_image']:9.3f}{mark} {speed:9.1f}x")
    lines += sorted(notes)
    lines.append("us/step: one graph call for the whole batch (trt: device loop + CUDA graphs; ort-*: host loop); "
                 "issue 7's target for ref28 at batch 1 on trt: < 50 us/step")
    return "\n".join(lines)
