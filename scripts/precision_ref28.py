"""Reduced-precision numbers for the ref28 bench model (random weights, 1x28x28, 256 levels).

Data: scikit-learn's digits, upscaled 8x8 -> 28x28 (nearest) and 17 -> 256 levels, so the
calibration and held-out images are real digit shapes at ref28's geometry. Prints the
calibrate results and the precision-parity table; writes nothing outside a temp folder.

    .venv/bin/python scripts/precision_ref28.py [--heldout 64] [--teacher 2] [--samples 2]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def ref28_digits() -> tuple[np.ndarray, np.ndarray]:
    from pixelrt.data import load_dataset, split

    train, test = split(load_dataset("digits"), 0.2, 0)

    def up(x):
        idx = (np.arange(28) * 8) // 28
        big = x[:, :, idx][:, :, :, idx].astype(np.int64)
        return np.ascontiguousarray((big * 255 + 8) // 16, dtype=np.uint8)

    return up(train.x), up(test.x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heldout", type=int, default=64)
    ap.add_argument("--calib", type=int, default=128)
    ap.add_argument("--teacher", type=int, default=2)
    ap.add_argument("--samples", type=int, default=2)
    args = ap.parse_args()

    from pixelrt.calibration.calibrate import calibrate_bundle
    from pixelrt.bench.specs import REF28
    from pixelrt.export import export_bundle
    from pixelrt.parity.precision import run_precision_parity

    train_x, test_x = ref28_digits()
    heldout, calib = test_x[: args.heldout], train_x[: args.calib]
    net = REF28.build()
    with tempfile.TemporaryDirectory(prefix="pixelrt-ref28-") as tmp:
        fp32 = export_bundle(net, REF28.image, heldout[:4], Path(tmp) / "fp32", log=lambda s: None).bundle
        bundles = [fp32]
        for precision in ("fp16", "int8"):
            res = calibrate_bundle(fp32.root, Path(tmp) / precision, precision, heldout, calib_x=calib,
                                   data_name="digits 28x28x256", method="auto", step_images=16, teacher=args.teacher,
                                   samples=args.samples, judge=False, log=print)
            m = res.bundle.manifest.calibration["measured"]
            print(f"{precision}: fp32 {res.fp32_bpd:.5f} -> {res.bpd:.5f} bits/dim ({m['relative_increase']:+.4%}); "
                  f"candidates {res.candidates}; step vs full {m['step_vs_full_max_bits_per_dim']:.2e}", flush=True)
            bundles.append(res.bundle)
        report = run_precision_parity(net, bundles, heldout, samples=args.samples, teacher=args.teacher)
        print(report.table())


if __name__ == "__main__":
    main()
