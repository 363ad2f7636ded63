"""The CLI's Multi-Scale PixelRNN paths (docs/pixelrnn.md, "Multi-Scale PixelRNN"): `sample` and `eval`
on a multi-scale bundle (torch-free), `export` and `parity` of a multi-scale checkpoint.
``pixelrt/cli.py`` dispatches here on the bundle's or checkpoint's kind.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from pixelrt.errors import ParityError, PixelrtError

def ms_export(args, model, meta, test_x: np.ndarray, record: dict) -> int:
    from pixelrt.export.multiscale_export import export_multiscale
    from pixelrt.bundle import ImageSpec

    t0 = time.perf_counter()
    bundle, c = export_multiscale(model, ImageSpec(**meta["image"]), test_x[: args.reference], args.out,
                                  overwrite=args.force, source={"checkpoint": str(args.checkpoint), "data": record})
    print(f"multi-scale bundle written to {args.out} in {time.perf_counter() - t0:.1f} s: "
          f"{', '.join(sorted(bundle.manifest.files))}")
    print(f"validated ORT vs PyTorch: whole model |d bits/dim| {c.full_max_dbpd:.1e}; stage 2 |d log p| "
          f"{c.stage2_max_dlogp:.1e}; bias field |d| {c.cond_max_dbias:.1e}; steps (forced) "
          f"|d log p| {c.step_max_dlogp:.1e}")
    return 0


def ms_sample(args, bundle) -> int:
    from pixelrt.runtime.grid import save_grid
    from pixelrt.runtime.multiscale import open_multiscale, sample_multiscale

    ms = open_multiscale(bundle)
    t0 = time.perf_counter()
    res = sample_multiscale(ms, args.num, args.seed, args.runtime, args.batch_size, progress=not args.no_progress)
    dt = time.perf_counter() - t0
    save_grid(res.images, bundle.image.levels, args.out)
    if args.npz:
        np.savez(args.npz, images=res.images, coarse=res.coarse, logp1=res.logp1, logp2=res.logp2, seed=args.seed)
    bpd = bundle.image.bits_per_dim(res.loglik)
    print(f"sampled {args.num} images (stage 1 {'x'.join(map(str, ms.stage1.image.shape))}, then stage 2) with "
          f"{args.runtime} in {dt:.2f} s ({1e3 * dt / args.num:.1f} ms/image); bits/dim of (coarse, image) under "
          f"the model: mean {bpd.mean():.4f}; grid: {args.out}")
    return 0


def ms_eval(args, bundle, x: np.ndarray, source: str) -> int:
    from pixelrt.runtime.multiscale import evaluate_multiscale, open_multiscale

    ms = open_multiscale(bundle)
    res = evaluate_multiscale(ms, x, args.runtime, args.batch_size, source=source)
    ref = bundle.reference()
    again = evaluate_multiscale(ms, ref["x"], args.runtime, source="bundle reference batch")
    from pixelrt.runtime.reference_check import check_reference

    d = bundle.image.dims * np.log(2.0)
    print(f"{source}: {len(x)} images, {res.mean_bits_per_dim:.4f} bits/dim ({args.runtime}; bound "
          f"log p1(c) + log p2(x|c): stage 1 {-res.loglik1.mean() / d:.4f} + stage 2 {-res.loglik2.mean() / d:.4f})")
    print(f"reference batch vs export time: |d bits/dim| {check_reference(bundle, again.loglik, ref['loglik']):.1e}")
    return 0


def ms_parity(args, model, meta, test_x: np.ndarray, record: dict) -> int:
    """PyTorch vs ORT (full graphs), teacher-forced steps vs PyTorch, sampled log-probs vs full graphs."""
    from pixelrt.export.multiscale_parity import run_multiscale_parity

    if args.receptive_field is not None:
        return _receptive_field(model, meta, args)
    given = [args.bundle] if isinstance(args.bundle, str) else list(args.bundle or [])
    rows, held_out, n, forced = run_multiscale_parity(model, meta, test_x, given, args.num, args.teacher,
                                                      args.samples, args.seed, not args.no_progress)
    print(f"multi-scale parity ({n} held-out, {forced} forced, {args.samples} sampled images); "
          f"held-out {held_out:.4f} bits/dim (ORT)")
    for k, (v, b) in rows.items():
        print(f"  {k:<50} {v:.2e}  (budget {b:.0e}) {'ok' if v <= b else 'MISS'}")
    if args.json:
        Path(args.json).write_text(json.dumps({k: {"value": v, "budget": b} for k, (v, b) in rows.items()}, indent=2) + "\n")
    misses = [k for k, (v, b) in rows.items() if not v <= b]
    if misses:
        raise ParityError(f"multi-scale parity missed its budget: {', '.join(misses)}")
    return 0


def _receptive_field(model, meta, args) -> int:
    from pixelrt.export.multiscale_parity import stage_fields
    from pixelrt.export.receptive_field import format_fields

    if args.receptive_field != "auto":
        raise PixelrtError("--receptive-field for a multi-scale model uses the checkpoint's size (pass it bare)")
    reports = stage_fields(model, meta["image"], args.seed)
    print(format_fields(reports))
    if any(r.audit.violations for r in reports):
        raise ParityError("causality violated in a stage of the multi-scale model")
    return 0
