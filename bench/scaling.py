"""Cost vs work: the bench model's layer stack exported at growing image sizes, the cached ORT loop timed
on a few rows of each, per step and per image, with the loop state's size per image.

The step state is O(k * W) per layer and a step reads O(k) columns of it, so the time per step should not
grow with the image; ms/image grows with the pixel count. Each size is a real, validated bundle (the
exporter checks step == full at that size), with the same weights (the spec's seed).
"""
from __future__ import annotations

from pathlib import Path

from pixelrt.bench.common import _load, export_temporary, random_images
from pixelrt.bench.step_speed import state_bytes_per_image
from pixelrt.bundle import ImageSpec


def run_scaling(spec, sizes: tuple[int, ...], batches: list[int], threads: int | None, root: Path, log, timer,
                rows: int = 2, bundles: dict | None = None, wave_timer=None) -> list[dict]:
    """One record per (size, batch, loop): ``rows`` rows of cached ORT sampling timed by ``timer`` (the bench's
    ``time_cached``), scaled to the image; and, where the bundle has one, its wavefront loop over the whole
    image (``wave_timer``: the bench's ``time_wave``). ``bundles``: already exported bundles by size, reused."""
    from pixelrt.runtime.ort_backend import OrtBackend

    out = []
    C, levels = spec.image.channels, spec.image.levels
    for size in sizes:
        image = ImageSpec(C, size, size, levels)
        bundle = (bundles or {}).get(size)
        if bundle is None:
            log(f"[scaling] exporting {spec.name}'s layer stack at {size}x{size}")
            bundle = export_temporary(spec.build(), image, random_images(image, 2), root, f"{spec.name}-{size}")
        sched = bundle.step_schedule
        steps = size * size * sched.substeps_per_pixel
        with OrtBackend(bundle.graph_path("step"), threads=threads or 0) as runner:
            for b in batches:
                sec = timer(runner, image, bundle.state, b, rows, seed=spec.seed, schedule=sched)
                out.append({"model": spec.name, "method": "scaling", "runtime": "ort", "batch": b, "height": size,
                            "width": size, "ms_per_image": sec * 1e3, "us_per_step": sec * b / steps * 1e6,
                            "state_bytes_per_image": state_bytes_per_image(bundle.state), "rows_timed": rows,
                            "ort_threads": threads or 0, "load_avg_1m": round(_load(), 2)})
                log(f"[scaling] {size}x{size} batch {b}: {out[-1]['us_per_step']:.1f} us/step")
        if sched.wavefront is not None and wave_timer is not None:  # the whole image: its calls are not per row
            with OrtBackend(bundle.graph_path(sched.wavefront.graph), threads=threads or 0) as runner:
                for b in batches:
                    sec, _ = wave_timer(runner, image, bundle, b, size, repeats=2, seed=spec.seed)
                    calls = sched.wavefront.calls(size, size) * sched.substeps_per_pixel
                    out.append({"model": spec.name, "method": "scaling", "loop": "wavefront", "runtime": "ort",
                                "batch": b, "height": size, "width": size, "ms_per_image": sec * 1e3,
                                "us_per_step": sec * b / steps * 1e6, "us_per_call": sec * b / calls * 1e6,
                                "calls_per_image": calls,
                                "state_bytes_per_image": state_bytes_per_image(bundle.state), "rows_timed": size,
                                "ort_threads": threads or 0, "load_avg_1m": round(_load(), 2)})
                    log(f"[scaling] {size}x{size} batch {b} wavefront: {out[-1]['us_per_step']:.1f} us per pixel, "
                        f"{out[-1]['us_per_call']:.1f} us per call")
    return out
