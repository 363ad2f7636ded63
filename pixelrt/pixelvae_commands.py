"""The CLI's PixelVAE paths (docs/vae.md, "PixelVAE"): `sample`, `eval`, `interpolate` on a PixelVAE
bundle (torch-free), `export` and `parity` of a PixelVAE checkpoint (torch-side modules imported inside).
``pixelrt/cli.py`` and ``pixelrt/cli_model.py`` dispatch here on the bundle's or checkpoint's kind.
"""
from __future__ import annotations

import time

import numpy as np

from pixelrt.errors import PixelrtError


def pv_sample(args, bundle) -> int:
    from pixelrt.runtime.grid import save_grid
    from pixelrt.runtime.pixelvae import open_pixelvae, pixelvae_backends, sample_pixelvae

    if args.mean:
        raise PixelrtError("--mean: a PixelVAE's p(x|z) is autoregressive and has no closed-form mean; "
                           "drop --mean (each image is an exact sample given its z)")
    pv = open_pixelvae(bundle)
    t0 = time.perf_counter()
    with pixelvae_backends(pv, args.runtime, step=True) as b:
        res = sample_pixelvae(pv, b, args.num, args.seed, args.batch_size, progress=not args.no_progress)
    dt = time.perf_counter() - t0
    save_grid(res.images, pv.image.levels, args.out)
    if args.npz:
        np.savez(args.npz, images=res.images, z=res.z, logp=res.logp, seed=args.seed)
    bpd = pv.image.bits_per_dim(res.log_px)
    print(f"sampled {args.num} images (z ~ N(0, I), features graph, then the PixelCNN step loop) with "
          f"{args.runtime} in {dt:.2f} s ({1e3 * dt / args.num:.1f} ms/image); -log p(x|z) of the samples: "
          f"mean {bpd.mean():.4f} bits/dim; grid: {args.out}")
    return 0


def pv_eval(args, bundle, x: np.ndarray, source: str) -> int:
    from contextlib import contextmanager

    from pixelrt.runtime.pixelvae import open_pixelvae, pixelvae_backends, pixelvae_bounds
    from pixelrt.vae_commands import latent_eval

    pv = open_pixelvae(bundle)

    @contextmanager
    def bounds():
        with pixelvae_backends(pv, args.runtime) as b:
            yield lambda xs, ks, **kw: pixelvae_bounds(pv, b, xs, ks, **kw)
    return latent_eval(args, bundle, x, source, bounds, " (PixelVAE: p(x|z) by the conditioned Gated PixelCNN)")


def pv_interpolate(args, bundle, x: np.ndarray) -> int:
    from pixelrt.runtime.grid import save_grid
    from pixelrt.runtime.pixelvae import interpolate_pixelvae, open_pixelvae, pixelvae_backends
    from pixelrt.vae_commands import check_pair

    a, b = check_pair(args, x)
    pv = open_pixelvae(bundle)
    with pixelvae_backends(pv, args.runtime, step=True) as backends:
        row = interpolate_pixelvae(pv, backends, x[[a, b]], args.steps, seed=args.seed)
    save_grid(row, pv.image.levels, args.out, columns=len(row))
    print(f"interpolated {args.split} images {a} -> {b} in {args.steps} steps (samples given z along the line between "
          f"the posterior means, one shared step-loop noise, seed {args.seed}; the real images at both ends); "
          f"grid: {args.out}")
    return 0


def pv_export(args, model, meta, test_x: np.ndarray, record: dict) -> int:
    from pixelrt.export.pixelvae_export import export_pixelvae_bundle
    from pixelrt.bundle import ImageSpec

    t0 = time.perf_counter()
    _, c = export_pixelvae_bundle(model, ImageSpec(**meta["image"]), test_x[: args.reference], args.out,
                                  overwrite=args.force, source={"checkpoint": str(args.checkpoint), "data": record})
    print(f"bundle written to {args.out} in {time.perf_counter() - t0:.1f} s: encoder.onnx, features.onnx, pixelcnn/ "
          "(full, step, row graphs), manifest.json")
    print(f"validated ORT vs PyTorch on {c.images} images x {c.samples} samples: |d ELBO| {c.max_delta_elbo:.1e}, "
          f"|d IWAE| {c.max_delta_iwae:.1e} nats; encoder |d mu| {c.encoder_max_dmu:.1e}; features |d| "
          f"{c.features_max_dcond:.1e}; teacher-forced step loop vs full graph |d log p| {c.step_vs_full_max_dlogp:.1e} "
          f"nats, |d bits/dim| {c.step_vs_full_max_dbpd:.1e}")
    return 0


def pv_parity(args, model, meta, test_x: np.ndarray, record: dict) -> int:
    """Print the report (and --json it); a miss beyond budget raises ParityError (exit 1)."""
    from pixelrt.export.pixelvae_export import export_pixelvae_bundle
    from pixelrt.export.pixelvae_parity import run_pixelvae_parity
    from pixelrt.vae_commands import latent_parity

    return latent_parity(args, meta, test_x, record, lambda *a, **k: export_pixelvae_bundle(model, *a, **k)[0],
                         lambda bundle, x, k: run_pixelvae_parity(model, bundle, x, k=k, samples=args.samples,
                                                                  teacher=args.teacher, seed=args.seed,
                                                                  progress=not args.no_progress))
