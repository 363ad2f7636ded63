"""`pixelrt serve --bench`: images per second and latency through a real Triton server at 1, 8 and 64 concurrent
clients, beside the in-process step loop at the same batch, in one run (docs/serving.md).

Each client is a closed loop (one request of one image, wait, repeat) with its own gRPC connection and distinct seeds,
so with c clients at most c images are queued: the server's dynamic batcher merges them into one step loop of up
to c images. The in-process row runs ``bundle_loop`` directly at batch c with the same backend, so the ratio of
the two is what serving costs (request handling, the queue delay, protobuf / HTTP, the stub's shared memory) on
top of the loop. Default model: ref28 (random weights, exported to a temporary bundle; needs the export extra).
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _ref28_bundle(root: Path, log):
    from pixelrt.bench.common import export_temporary, random_images
    from pixelrt.bench.specs import REF28

    log("exporting ref28 (random weights) to a temporary bundle")
    return export_temporary(REF28.build(), REF28.image, random_images(REF28.image, 4), root, "ref28")


def time_in_process(bundle, batch: int, repeats: int = 3) -> float:
    """Median seconds of one step loop over ``batch`` images (ORT CPU, the server's runtime)."""
    from pixelrt.runtime.backends import step_backends
    from pixelrt.runtime.sampler import bundle_loop, make_noise

    times = []
    with step_backends("ort", bundle) as (step, row):
        for r in range(repeats + 1):  # the first run warms the session up
            context = {k: np.zeros(batch, np.int64) for k in bundle.context} or None
            noise = make_noise(batch, bundle.image, r, bundle.step_schedule)
            t0 = time.perf_counter()
            bundle_loop(step, row, bundle, noise, batch_size=batch, context=context)
            if r:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_server(grpc_url: str, model: str, clients: int, seconds: float, label: bool) -> dict:
    """``clients`` closed-loop clients for ``seconds`` after one warm-up request each: images/s and latencies.

    The clients are coroutines on one gRPC channel each (``tritonclient.grpc.aio``), not threads: on this 2-core
    box 64 Python threads spent more CPU on the GIL than the server on its loop, and the bench measures the
    server. The images are not checked here (tests/serving/ does that)."""
    import asyncio

    import tritonclient.grpc.aio as aio
    from tritonclient.grpc import InferInput

    address = grpc_url.split("://", 1)[1]

    def request(seed: int) -> list:
        inputs = [("seed", np.full((1, 1), seed, np.int64))] + ([("label", np.zeros((1, 1), np.int64))] if label else [])
        out = []
        for name, value in inputs:
            t = InferInput(name, [1, 1], "INT64")
            t.set_data_from_numpy(value)
            out.append(t)
        return out

    async def run(stats) -> tuple[list[float], float, dict]:
        conns = [aio.InferenceServerClient(address) for _ in range(clients)]
        await asyncio.gather(*(c.infer(model, request(10_000 + k)) for k, c in enumerate(conns)))  # warm-up
        before = stats.statistics()  # a blocking call, between the phases: nothing else is in flight
        latencies: list[float] = []
        stop_at = time.perf_counter() + seconds

        async def loop(k: int, c) -> None:
            seed = k * 100_000
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                await c.infer(model, request(seed))
                latencies.append(time.perf_counter() - t0)
                seed += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(loop(k, c) for k, c in enumerate(conns)))
        elapsed = time.perf_counter() - t0
        after = stats.statistics()
        await asyncio.gather(*(c.close() for c in conns))
        return latencies, elapsed, {k: after[k] - before[k] for k in ("executions", "inferences")}

    from pixelrt.serving.client import connect

    with connect(grpc_url, model[:-len("_sample")]) as c:
        latencies, elapsed, counts = asyncio.run(run(c))
    lat = np.sort(np.asarray(latencies))
    execs, inferences = counts["executions"], counts["inferences"]
    return {"images": len(lat), "seconds": elapsed, "images_per_s": len(lat) / elapsed,
            "p50_ms": 1e3 * float(np.percentile(lat, 50)), "p99_ms": 1e3 * float(np.percentile(lat, 99)),
            "mean_batch": inferences / max(execs, 1)}


def run_serving_bench(bundle=None, clients=(1, 8, 64), seconds: float = 8.0, json_path=None, max_batch: int = 64,
                      queue_delay_us: int = 20000, log=None) -> list[dict]:
    import os
    from datetime import datetime, timezone

    from pixelrt.bench.common import write_records
    from pixelrt.bundle import load_bundle
    from pixelrt.errors import PixelrtError
    from pixelrt.serving.server import serve_bundle

    log = log or (lambda s: print(s, flush=True))
    clients = list(clients)
    if not clients or min(clients) < 1 or max(clients) > max_batch:
        raise PixelrtError(f"--clients must be between 1 and --max-batch {max_batch}, got {clients}")
    with tempfile.TemporaryDirectory(prefix="pixelrt-serve-bench-") as tmp:
        bundle = load_bundle(bundle) if bundle is not None else _ref28_bundle(Path(tmp), log)
        label = "label" in bundle.context
        log(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        records = []
        repo, server = serve_bundle(bundle, Path(tmp) / "serve", max_batch=max_batch, queue_delay_us=queue_delay_us)
        with server:  # each point: the in-process loop right before the server's (the server idle), on a noisy box
            for c in clients:
                t = time_in_process(bundle, c)
                rec = {"clients": c, "in_process_batch_s": t, "in_process_images_per_s": c / t,
                       "load": round(os.getloadavg()[0], 2)}
                log(f"in-process step loop, batch {c}: {1e3 * t:.0f} ms ({c / t:.1f} images/s)")
                rec.update(time_server(server.grpc_url, repo.sample_model, c, seconds, label))
                records.append(rec)
                log(f"server, {c} clients: {rec['images_per_s']:.1f} images/s, p50 {rec['p50_ms']:.0f} ms, "
                    f"p99 {rec['p99_ms']:.0f} ms, mean batch {rec['mean_batch']:.1f} (load {rec['load']})")
        stamp = {"model": bundle.root.name, "image": list(bundle.image.shape), "levels": bundle.image.levels,
                 "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu_count": os.cpu_count(),
                 "load_after": round(os.getloadavg()[0], 2), "seconds_per_point": seconds,
                 "queue_delay_us": queue_delay_us}
        records = [{**stamp, **r} for r in records]
    log(format_table(records))
    if json_path:
        write_records(json_path, records, log)
    return records


def format_table(records: list[dict]) -> str:
    rows = ["| clients | server images/s | p50 ms | p99 ms | mean batch | in-process batch-c images/s | "
            "server / in-process | load |", "|---|---|---|---|---|---|---|---|"]
    for r in records:
        rows.append(f"| {r['clients']} | {r['images_per_s']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
                    f"{r['mean_batch']:.1f} | {r['in_process_images_per_s']:.1f} | "
                    f"{r['images_per_s'] / r['in_process_images_per_s']:.2f} | {r.get('load', float('nan')):.1f} |")
    one = next((r for r in records if r["clients"] == 1), None)
    top = max(records, key=lambda r: r["clients"])
    if one is not None and top is not one:
        rows.append(f"\n{top['clients']} clients vs 1: {top['images_per_s'] / one['images_per_s']:.1f}x the "
                    f"throughput; vs the in-process batch-{top['clients']} loop: "
                    f"{top['in_process_images_per_s'] / top['images_per_s']:.2f}x slower")
    return "\n".join(rows)
