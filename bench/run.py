"""`pixelrt bench --model NAME`: the row of ``bench/specs.py`` timed by its measurement.

``MEASUREMENTS[spec.measure](spec, batches, options) -> records``; ``run_gpu_bench`` times a step-loop row on
GPU runtimes next to ORT CPU (``runtime/gpu_bench.py``).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pixelrt.bench.specs import COMPOSITE, DECODER, NAIVE_GRAPH, STEP_LOOP, BenchSpec, bench_spec
from pixelrt.errors import PixelrtError


@dataclass
class BenchOptions:
    naive_rows: int = 1                # rows timed for the naive sampler (extrapolated)
    rows: int | None = None            # rows timed for cached sampling (None: the row's default, else all)
    threads: int | None = None         # intra-op threads for PyTorch and ORT (None: each library's own)
    json_path: str | None = None       # one record per measurement, written atomically
    precisions: tuple[str, ...] = ("fp32",)  # step-loop rows: ORT rows per precision (calibrated copies)
    log: Callable[[str], None] | None = None

    @classmethod
    def from_args(cls, args) -> "BenchOptions":
        return cls(naive_rows=args.naive_rows, rows=args.rows, threads=args.threads, json_path=args.json,
                   precisions=tuple(p.strip() for p in args.precisions.split(",") if p.strip()))


def _step_loop(spec: BenchSpec, batches: list[int], o: BenchOptions) -> list[dict]:
    from pixelrt.bench.autoregressive import run_bench

    return run_bench(batches, json_path=o.json_path, naive_rows=o.naive_rows, rows=o.rows or spec.rows, spec=spec,
                     threads=o.threads, precisions=o.precisions, log=o.log)


def _naive_graph(spec: BenchSpec, batches: list[int], o: BenchOptions) -> list[dict]:
    from pixelrt.bench.autoregressive import run_pixelcnnpp_bench

    return run_pixelcnnpp_bench(batches, json_path=o.json_path, rows=o.rows or spec.rows or spec.image.height,
                                naive_pixels=max(2, o.naive_rows), threads=o.threads, spec=spec, log=o.log)


def _decoder(spec: BenchSpec, batches: list[int], o: BenchOptions) -> list[dict]:
    from pixelrt.bench.decoder import run_vae_bench

    return run_vae_bench(batches, json_path=o.json_path, spec=spec, threads=o.threads, log=o.log)


def _composite(spec: BenchSpec, batches: list[int], o: BenchOptions) -> list[dict]:
    from pixelrt.bench.composite import run_composite_bench

    return run_composite_bench(spec, batches, naive_rows=o.naive_rows, threads=o.threads, json_path=o.json_path,
                               log=o.log)


# measurement name (a row's ``measure``) -> (spec, batches, options) -> records
MEASUREMENTS = {STEP_LOOP: _step_loop, NAIVE_GRAPH: _naive_graph, DECODER: _decoder, COMPOSITE: _composite}


def run_benchmark(spec: BenchSpec, batches: list[int], options: BenchOptions | None = None) -> list[dict]:
    return MEASUREMENTS[spec.measure](spec, batches, options or BenchOptions())


def run_gpu_bench(runtimes: str, batches: list[int], model: str = "ref28", rows: int | None = None,
                  json_path=None, log=None) -> list[dict]:
    """`pixelrt bench --runtime ...`: the bench model exported once, timed on GPU runtimes next to ORT CPU
    (runtime/gpu_bench.py). Every runtime is checked before the export: without CUDA, one clear error."""
    from pixelrt.bench.common import export_temporary, random_images
    from pixelrt.bench.specs import BENCHES
    from pixelrt.runtime.gpu_bench import bench_bundle, parse_runtimes, require

    log = log or (lambda s: print(s, flush=True))
    names = parse_runtimes(runtimes)
    gpu = [n for n, s in BENCHES.items() if s.gpu]
    if model not in gpu:
        raise PixelrtError(f"--runtime benchmarks {', '.join(gpu)}, not {model!r}")
    for name in names:
        log(f"{name}: {require(name)}")
    spec = bench_spec(model)
    with tempfile.TemporaryDirectory(prefix="pixelrt-gpu-bench-") as tmp:
        log(f"exporting {spec.name} to a temporary bundle")
        bundle = export_temporary(spec.build(), spec.image, random_images(spec.image, 4), Path(tmp), spec.name)
        return bench_bundle(bundle, names, batches, rows=rows, name=spec.name, log=log, json_path=json_path)
