"""The issue's GPU checks in one table (run by scripts/gpu_check.sh on a machine with a CUDA GPU).

Exports ref28 (the bench model: PixelCNN 1x28x28, 256 levels, 2h=64, 8 blocks, random weights) to a
temporary bundle and measures, with native TensorRT (server profile, TF32 off):

1. TRT FP32 full graph vs PyTorch, bits/dim per image of a reference batch    budget |d| <= 1e-4
2. step-loop sampling at batch 1, microseconds per step (device loop, CUDA graphs) target < 50 us
   (beside ORT CUDA and ORT CPU running the host step loop, for scale)
3. summed step log p of TRT samples vs the TRT full graph's log-likelihood    budget |d bits/dim| <= 1e-4
4. with --bench-json: the rows of `pixelrt bench --runtime ...` (us/step, ms/image, vs ORT CPU, batch 1 and 64)

Timings are best of 3 after a warm-up image; they are measurements, printed, never asserted.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--bench-json", default=None, help="records of `pixelrt bench --runtime ... --json` to add to the table")
    args = ap.parse_args()

    import torch

    from pixelrt.bench.specs import REF28
    from pixelrt.export import export_bundle
    from pixelrt.runtime.engine_cache import EngineCache
    from pixelrt.runtime.evaluate import evaluate
    from pixelrt.runtime.ort_backend import OrtBackend
    from pixelrt.runtime.sampler import bundle_loop, make_noise, step_loop
    from pixelrt.runtime.trt_backend import TrtBackend, TrtStepBackend, current_device
    from pixelrt.runtime.trt_profiles import get_profile

    device = current_device()
    print(f"GPU: {device.gpu} (sm {device.compute_capability}), TensorRT {device.tensorrt}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pixelrt-gpu-check-") as tmp:
        net, image = REF28.build(), REF28.image
        x = np.random.default_rng(0).integers(0, image.levels, (8, *image.shape)).astype(np.uint8)
        print("exporting ref28 ...", flush=True)
        bundle = export_bundle(net, image, x, Path(tmp) / "ref28", log=lambda s: None).bundle
        with torch.inference_mode():
            t_ll = net.log_prob(torch.from_numpy(x)).double().flatten(1).sum(1).numpy()
        profile = get_profile("server").with_options(tf32=False, batch_max=64)
        cache = EngineCache(device, Path(tmp) / "engines")
        with TrtBackend(bundle.graph_path("full"), profile, graph="full", cache=cache) as full, \
                TrtStepBackend(bundle.graph_path("step"), profile, cache=cache) as step:
            ev = evaluate(full, bundle, x)
            d = np.abs(ev.bits_per_dim - image.bits_per_dim(t_ll)).max()
            rows.append(("TRT FP32 (TF32 off) vs PyTorch, |d bits/dim| (8 images)", d, 1e-4, d <= 1e-4))

            steps = image.height * image.width * bundle.step_schedule.substeps_per_pixel
            noise1 = make_noise(1, image, 1)
            bundle_loop(step, None, bundle, noise1, batch_size=1)  # warm-up: build + capture
            t = min(_timed(lambda: bundle_loop(step, None, bundle, noise1, batch_size=1)) for _ in range(3))
            us = 1e6 * t / steps
            rows.append(("step loop, batch 1, ref28: TRT device loop + CUDA graphs, us/step", us, 50.0, us < 50.0))
            step.cuda_graph = False
            t = min(_timed(lambda: bundle_loop(step, None, bundle, noise1, batch_size=1)) for _ in range(2))
            rows.append(("  same without CUDA graphs, us/step", 1e6 * t / steps, None, None))
            step.cuda_graph = True

            noise = make_noise(args.samples, image, 0)
            s = bundle_loop(step, None, bundle, noise, batch_size=args.samples)
            again = evaluate(full, bundle, s.images)
            d = np.abs(image.bits_per_dim(s.loglik) - again.bits_per_dim).max()
            rows.append((f"TRT samples: summed step log p vs full loglik, |d bits/dim| ({args.samples})", d, 1e-4,
                         d <= 1e-4))
        for name, kw in (("ORT CUDA", {"device": "cuda"}), ("ORT CPU", {})):
            try:
                with OrtBackend(bundle.graph_path("step"), **kw) as ort_step:
                    short = type(image)(image.channels, 2, image.width, image.levels)  # 2 rows, scaled
                    nz = make_noise(1, short, 1)
                    step_loop(ort_step, short, bundle.state, nz, batch_size=1)
                    t = min(_timed(lambda: step_loop(ort_step, short, bundle.state, nz, batch_size=1)) for _ in range(3))
                rows.append((f"  {name} host step loop, us/step (2 rows timed)", 1e6 * t / (2 * image.width), None, None))
            except Exception as e:  # noqa: BLE001 - a missing provider is reported, not fatal
                rows.append((f"  {name}: not run ({str(e)[:60]})", float("nan"), None, None))
    rows += bench_rows(args.bench_json)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'check':{width}s}  {'measured':>10s}  {'budget':>8s}  result")
    print("-" * (width + 32))
    for name, value, budget, ok in rows:
        b = "-" if budget is None else f"{budget:g}"
        print(f"{name:{width}s}  {value:10.3g}  {b:>8s}  {'' if ok is None else 'ok' if ok else 'MISS'}")
    if args.json:
        Path(args.json).write_text(json.dumps([{"check": r[0], "measured": float(r[1]), "budget": r[2], "ok": r[3]}
                                               for r in rows], indent=2) + "\n")
    return 0 if all(r[3] is not False for r in rows) else 1


def bench_rows(path) -> list[tuple]:
    """One table row per `pixelrt bench --runtime` record: us/step measured, ms/image and the ratio to
    ORT CPU at the same batch in the name (no budget: the 50 us target is the trt row above)."""
    if not path or not Path(path).exists() or not Path(path).stat().st_size:
        return []
    records = json.loads(Path(path).read_text())
    cpu = {r["batch"]: r["ms_per_image"] for r in records if r["runtime"] == "ort"}
    rows = []
    for r in records:
        label = "ORT CPU" if r["runtime"] == "ort" else r["runtime"]
        ratio = f", {cpu[r['batch']] / r['ms_per_image']:.1f}x ORT CPU" if r["runtime"] != "ort" and r["batch"] in cpu else ""
        rows.append((f"bench {r['model']} {label}, batch {r['batch']}: us/step ({r['ms_per_image']:.3g} ms/image{ratio})",
                     r["us_per_step"], None, None))
    return rows


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    sys.exit(main())
