"""`pixelrt demo`: the whole path on real data in one command, every output in one folder.

train on digits -> export a bundle -> sample a grid in ONNX Runtime -> held-out
bits/dim from the bundle -> parity table (PyTorch vs ORT, step vs full).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from pixelrt.outputs import write_text


def run_demo(out: Path, minutes: float = 1.0) -> int:
    from pixelrt.data import load_dataset, split
    from pixelrt.export import export_bundle
    from pixelrt.parity.autoregressive import run_parity
    from pixelrt.models import PixelCNN, PixelCNNConfig
    from pixelrt.parity.options import heldout_sample
    from pixelrt.models.checkpoint import load_checkpoint
    from pixelrt.models.train import TrainConfig, checkpoint_meta, train
    from pixelrt.bundle import ImageSpec
    from pixelrt.runtime.evaluate import evaluate
    from pixelrt.runtime.grid import save_grid
    from pixelrt.runtime.ort_backend import OrtBackend
    from pixelrt.runtime.backends import step_backends
    from pixelrt.runtime.sampler import bundle_loop, make_noise

    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset("digits")
    tr, te = split(ds)
    C, H, W = ds.shape
    image = ImageSpec(C, H, W, ds.levels)
    save_grid(te.x[:16], ds.levels, out / "data.png")

    print(f"[1/5] training PixelCNN on digits ({len(tr)} train / {len(te)} held-out, {C}x{H}x{W}, "
          f"{ds.levels} levels), budget {minutes:g} min")
    model = PixelCNN(PixelCNNConfig(channels=C, levels=ds.levels))
    meta = checkpoint_meta(tr, te, {"spec": "digits", "levels": None, "test_fraction": 0.2, "split_seed": 0})
    result = train(model, tr, te, TrainConfig(time_budget=minutes * 60), out / "checkpoint", meta)
    model, _ = load_checkpoint(out / "checkpoint")  # the best epoch, as saved

    print("[2/5] exporting the bundle (full.onnx + step.onnx + wave.onnx + manifest.json)")
    exported = export_bundle(model, image, te.x[:8], out / "bundle", overwrite=True,
                             source={"checkpoint": str(out / "checkpoint"), "data": meta["data"]})
    bundle = exported.bundle

    print("[3/5] sampling 16 images in ONNX Runtime (the wavefront loop: several pixels of each image per call)")
    t0 = time.perf_counter()
    with step_backends("ort", bundle) as (step, row):
        samples = bundle_loop(step, row, bundle, make_noise(16, image, seed=0), progress=True)
    ms_per_image = 1e3 * (time.perf_counter() - t0) / 16
    save_grid(samples.images, ds.levels, out / "samples.png")

    print("[4/5] held-out bits/dim through full.onnx")
    with OrtBackend(bundle.graph_path("full")) as full:
        held_out = evaluate(full, bundle, te.x, source="digits test split")

    print("[5/5] parity: PyTorch vs ORT, step vs full, samples under shared noise, causality")
    held, _ = heldout_sample(te, 64, seed=0)  # a seeded sample of the whole held-out split, not its first 64
    report = run_parity(model, bundle, held.x, samples=8, teacher=8, log=lambda s: None)
    table = report.table()
    write_text(out / "parity.txt", table + "\n")
    write_text(out / "parity.json", json.dumps(report.as_dict(), indent=2) + "\n")
    print(table)

    summary = {
        "held_out_bits_per_dim_torch": result.best_bits_per_dim,
        "held_out_bits_per_dim_ort": held_out.mean_bits_per_dim,
        "best_epoch": result.best_epoch,
        "training_seconds": round(result.seconds, 1),
        "sample_ms_per_image_ort": round(ms_per_image, 2),
        "sample_bits_per_dim": float(image.bits_per_dim(samples.loglik).mean()),
        "parity_ok": report.ok,
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(f"\nsummary ({out}/):")
    print(f"  held-out bits/dim: {summary['held_out_bits_per_dim_ort']:.4f} in ORT "
          f"(PyTorch {summary['held_out_bits_per_dim_torch']:.4f}), best epoch {result.best_epoch}, "
          f"trained {result.seconds:.0f} s")
    print(f"  sampling in ORT: {ms_per_image:.1f} ms/image; samples.png beside data.png (real held-out digits)")
    print(f"  parity: {'all checks within budget' if report.ok else 'MISSES: see parity.txt'}; "
          f"total {summary['total_seconds']:.0f} s")
    report.raise_on_miss()
    return 0
