"""The CLI's VAE paths: `sample`, `eval`, `interpolate` on a VAE bundle, and `export` / `parity` of a VAE
checkpoint. ``pixelrt/cli.py`` dispatches here on the bundle's or checkpoint's kind, so the
autoregressive paths stay as they are. Sample, eval and interpolate are torch-free; export and
parity import torch-side modules inside their functions (the export extra).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pixelrt.errors import PixelrtError


def vae_sample(args, bundle) -> int:
    from pixelrt.runtime.backends import open_backend
    from pixelrt.runtime.grid import save_grid
    from pixelrt.runtime.vae import latent_size, sample_vae

    if args.num < 1:
        raise PixelrtError(f"-n must be at least 1, got {args.num}")
    t0 = time.perf_counter()
    with open_backend(args.runtime, bundle.graph_path("decoder")) as dec:
        images = sample_vae(dec, bundle.image, latent_size(bundle), args.num, args.seed, use_mean=args.mean,
                            batch_size=args.batch_size)
    dt = time.perf_counter() - t0
    save_grid(images, bundle.image.levels, args.out)
    if args.npz:
        np.savez(args.npz, images=images, seed=args.seed)
    what = "decoder means" if args.mean else "samples of p(x|z)"
    print(f"decoded {args.num} images ({what}, z ~ N(0, I), seed {args.seed}) with {args.runtime} in {dt:.2f} s "
          f"({1e3 * dt / args.num:.2f} ms/image); grid: {args.out}")
    return 0


def vae_eval(args, bundle, x: np.ndarray, source: str) -> int:
    from contextlib import contextmanager

    from pixelrt.runtime.backends import open_backend
    from pixelrt.runtime.vae import vae_bounds

    @contextmanager
    def bounds():
        with open_backend(args.runtime, bundle.graph_path("encoder")) as enc, \
                open_backend(args.runtime, bundle.graph_path("decoder")) as dec:
            yield lambda xs, ks, **kw: vae_bounds(enc, dec, bundle.image, xs, ks, **kw)
    return latent_eval(args, bundle, x, source, bounds)


def latent_eval(args, bundle, x: np.ndarray, source: str, bounds, note: str = "") -> int:
    """`pixelrt eval` of a latent-variable bundle: ELBO and IWAE-1, 10, ... --iwae on ``x``, then the bundle's
    reference batch again against its export-time bounds. ``bounds()`` is a context manager yielding
    ``f(x, ks, **kw) -> VaeBounds`` on open backends."""
    from pixelrt.runtime.vae import iwae_ladder

    k = 100 if args.iwae is None else args.iwae
    ks = iwae_ladder(k) if k >= 1 else [k]  # k < 1: the estimator names the problem
    ref = bundle.reference()
    K = ref["eps"].shape[1]
    t0 = time.perf_counter()
    with bounds() as f:
        res = f(x, ks, seed=args.seed, batch_size=max(args.batch_size, 1), progress=True, source=source)
        again = f(ref["x"], [K], eps=ref["eps"], source="bundle reference batch")
    dt = time.perf_counter() - t0
    print(f"{source}: {len(x)} images, {args.runtime}, noise seed {args.seed}, {dt:.1f} s{note}")
    print(f"  ELBO     {res.bits_per_dim(res.elbo):.4f} bits/dim  (KL {res.kl.mean():.2f} nats, "
          f"reconstruction {-res.recon.mean():.2f} nats, averaged over {ks[-1]} samples)")
    for kk in ks:
        print(f"  IWAE-{kk:<5d} {res.bits_per_dim(res.iwae[kk]):.4f} bits/dim")
    from pixelrt.runtime.reference_check import check_reference, drift_budget

    drift = max(check_reference(bundle, again.elbo, ref["elbo"]), check_reference(bundle, again.iwae[K], ref["iwae"]))
    print(f"reference batch |d ELBO|, |d IWAE| vs export time: {drift:.1e} bits/dim (budget {drift_budget(bundle):.0e})")
    return 0


def check_pair(args, x: np.ndarray) -> tuple[int, int]:
    """--pair A B as indices into the chosen split, or one error naming the valid range."""
    for i in args.pair:
        if not 0 <= i < len(x):
            raise PixelrtError(f"--pair index {i} is out of range: the {args.split} split has {len(x)} images "
                               f"(0..{len(x) - 1})")
    return tuple(args.pair)


def vae_interpolate(args, bundle, x: np.ndarray) -> int:
    from pixelrt.runtime.backends import open_backend
    from pixelrt.runtime.grid import save_grid
    from pixelrt.runtime.vae import interpolate

    a, b = check_pair(args, x)
    with open_backend(args.runtime, bundle.graph_path("encoder")) as enc, \
            open_backend(args.runtime, bundle.graph_path("decoder")) as dec:
        row = interpolate(enc, dec, bundle.image, x[[a, b]], args.steps)
    save_grid(row, bundle.image.levels, args.out, columns=len(row))
    print(f"interpolated {args.split} images {a} -> {b} in {args.steps} steps (decoder means between the "
          f"posterior means; the real images at both ends); grid: {args.out}")
    return 0


def vae_export(args, model, meta, test_x: np.ndarray, record: dict) -> int:
    from pixelrt.export.vae_export import export_vae_bundle
    from pixelrt.bundle import ImageSpec

    t0 = time.perf_counter()
    result = export_vae_bundle(model, ImageSpec(**meta["image"]), test_x[: args.reference], args.out,
                               overwrite=args.force, source={"checkpoint": str(args.checkpoint), "data": record})
    c = result.check
    print(f"bundle written to {args.out} in {time.perf_counter() - t0:.1f} s: encoder.onnx, decoder.onnx, manifest.json")
    print(f"validated ORT vs PyTorch on {c.images} images x {c.samples} samples: |d ELBO| {c.max_delta_elbo:.1e}, "
          f"|d IWAE| {c.max_delta_iwae:.1e} nats; decoder |d log p| {c.decoder_max_dlogp:.1e}; encoder |d mu| "
          f"{c.encoder_max_dmu:.1e}")
    return 0


def vae_parity(args, model, meta, test_x: np.ndarray, record: dict) -> int:
    """Print the report (and --json it); a miss beyond budget raises ParityError (exit 1)."""
    from pixelrt.export.vae_export import export_vae_bundle
    from pixelrt.export.vae_parity import run_vae_parity

    return latent_parity(args, meta, test_x, record, lambda *a, **k: export_vae_bundle(model, *a, **k).bundle,
                         lambda bundle, x, k: run_vae_parity(model, bundle, x, k=k, seed=args.seed,
                                                             progress=not args.no_progress))


def latent_parity(args, meta, test_x: np.ndarray, record: dict, export, run) -> int:
    """The parity command of a latent-variable model (VAE, PixelVAE): ``args.bundle`` or a bundle exported to
    a temporary folder by ``export(image, x, out, source=, log=) -> Bundle``, then ``run(bundle, x, k)``'s
    report printed (and --json written); a miss raises ParityError (exit 1)."""
    import json
    import tempfile

    from pixelrt.bundle import ImageSpec, load_bundle

    k = 100 if args.iwae is None else args.iwae
    with tempfile.TemporaryDirectory(prefix="pixelrt-parity-") as tmp:
        if args.bundle:
            bundle = load_bundle(args.bundle[0])
        else:
            print("exporting a bundle to a temporary folder (pass --bundle to compare an existing one)")
            bundle = export(ImageSpec(**meta["image"]), test_x[:8], Path(tmp) / "bundle",
                            source={"checkpoint": str(args.checkpoint), "data": record}, log=lambda s: None)
        report = run(bundle, test_x[: args.num], k)
    print(report.table())
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    report.raise_on_miss()
    return 0
