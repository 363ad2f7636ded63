"""The CLI's model-side commands: train, export, parity (incl. --receptive-field and the precision
table), calibrate, bench and demo. Torch-side modules are imported inside each command, so this
module's top level stays torch-free (tests/runtime/test_no_torch.py lists which commands may)."""
from __future__ import annotations

import json
import time
from pathlib import Path

from pixelrt.cli_common import _condition_overrides, _model_context, _parse_overrides, _split_data
from pixelrt.errors import ParityError, PixelrtError


def cmd_train(args) -> int:
    from pixelrt.models import get_model
    from pixelrt.models.train import TrainConfig, checkpoint_meta, train

    ds, tr, te, record = _split_data(args)
    entry = get_model(args.model)
    C, H, W = ds.shape
    sizes = {"height": H, "width": W} if entry.kind in ("vae", "pixelvae") else {}  # a VAE's dense layers fix the geometry
    config = entry.make_config(**{"channels": C, "levels": ds.levels, **sizes, **_condition_overrides(args, entry, ds),
                                  **_parse_overrides(args.set)})
    if (config.channels, config.levels) != (C, ds.levels) or any(getattr(config, k) != v for k, v in sizes.items()):
        raise PixelrtError(f"--set channels/levels/height/width disagree with the data ({C}x{H}x{W}, "
                           f"{ds.levels} levels); leave them to the data")
    out = Path(args.out)
    if out.exists() and not args.force:
        raise PixelrtError(f"{out} already exists; choose another -o or pass --force to replace it")
    try:
        model = entry.build(config)
    except ValueError as e:
        raise PixelrtError(f"model config is invalid: {e}") from None
    cfg = TrainConfig(batch_size=args.batch_size, seed=args.seed,
                      time_budget=None if args.minutes is None else args.minutes * 60)
    for name, value in getattr(model, "train_defaults", {}).items():  # a family's own defaults, before flags
        setattr(cfg, name, value)
    for name in ("epochs", "lr", "weight_decay"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    params = sum(p.numel() for p in model.parameters())
    print(f"training {args.model} ({params / 1e6:.2f} M parameters) on {ds.name}: {len(tr)} train / {len(te)} "
          f"held-out images of {C}x{H}x{W}, {ds.levels} levels")
    result = train(model, tr, te, cfg, out, checkpoint_meta(tr, te, record), progress=not args.no_progress)
    print(f"best held-out {result.best_bits_per_dim:.4f} {getattr(model, 'metric', 'bits/dim')} at epoch {result.best_epoch} "
          f"({result.seconds:.0f} s); checkpoint: {out}")
    return 0


def cmd_export(args) -> int:
    from pixelrt.export.bundle_writer import export_bundle
    from pixelrt.models.checkpoint import load_checkpoint
    from pixelrt.bundle import ImageSpec

    model, meta = load_checkpoint(args.checkpoint)
    image = ImageSpec(**meta["image"])
    _, _, test, record = _split_data(args, meta.get("data"))
    if getattr(model, "bundle_kind", None) == "multiscale":
        from pixelrt.multiscale_commands import ms_export

        return ms_export(args, model, meta, test.x, record)
    if getattr(model, "bundle_kind", None) == "vae":
        from pixelrt.vae_commands import vae_export

        return vae_export(args, model, meta, test.x, record)
    if getattr(model, "bundle_kind", None) == "pixelvae":
        from pixelrt.pixelvae_commands import pv_export

        return pv_export(args, model, meta, test.x, record)
    t0 = time.perf_counter()
    result = export_bundle(model, image, test.x[: args.reference], args.out, overwrite=args.force,
                           source={"checkpoint": str(args.checkpoint), "data": record},
                           **_model_context(model, test, args.reference))
    c = result.check
    graphs = ", ".join(g.file for g in result.bundle.graphs.values())  # full, step and any per-row graph
    print(f"bundle written to {args.out} in {time.perf_counter() - t0:.1f} s: {graphs}, manifest.json")
    print(f"validated ORT vs PyTorch: full |d bits/dim| {c.full_max_dbpd:.1e}, |d log p| {c.full_max_dlogp:.1e}; "
          f"step |d log p| {c.step_max_dlogp:.1e} over {c.positions} sub-pixel positions")
    return 0


def cmd_parity(args) -> int:
    import tempfile

    from pixelrt.export.bundle_writer import export_bundle
    from pixelrt.export.parity import run_parity
    from pixelrt.models.checkpoint import load_checkpoint
    from pixelrt.bundle import ImageSpec, load_bundle

    model, meta = load_checkpoint(args.checkpoint)
    if getattr(model, "bundle_kind", None) == "multiscale":
        from pixelrt.multiscale_commands import ms_parity

        _, _, test, record = _split_data(args, meta.get("data"))
        return ms_parity(args, model, meta, test.x, record)
    if args.receptive_field is not None:
        return _receptive_field(args, model, meta)
    _, _, test, record = _split_data(args, meta.get("data"))
    if getattr(model, "bundle_kind", None) == "vae":
        from pixelrt.vae_commands import vae_parity

        return vae_parity(args, model, meta, test.x, record)
    if getattr(model, "bundle_kind", None) == "pixelvae":
        from pixelrt.pixelvae_commands import pv_parity

        return pv_parity(args, model, meta, test.x, record)
    if args.bundle and (len(args.bundle) > 1 or load_bundle(args.bundle[0]).precision != "fp32"):
        return _precision_parity(args, model, test.x[: args.num])  # reduced precision: the precision table
    with tempfile.TemporaryDirectory(prefix="pixelrt-parity-") as tmp:
        if args.bundle:
            bundle = load_bundle(args.bundle[0])
        else:
            print("exporting a bundle to a temporary folder (pass --bundle to compare an existing one)")
            bundle = export_bundle(model, ImageSpec(**meta["image"]), test.x[:8], Path(tmp) / "bundle",
                                   source={"checkpoint": str(args.checkpoint), "data": record}, log=lambda s: None,
                                   **_model_context(model, test, 8)).bundle
        from pixelrt.runtime.conditioning import data_context, sample_context

        report = run_parity(model, bundle, test.x[: args.num], samples=args.samples, teacher=args.teacher,
                            seed=args.seed, progress=not args.no_progress, runtime=args.runtime,
                            context={k: v[: args.num] for k, v in data_context(bundle.context, test).items()},
                            sample_context=sample_context(bundle, args.samples))
    print(report.table())
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    report.raise_on_miss()
    return 0


def _receptive_field(args, model, meta) -> int:
    from pixelrt.export.receptive_field import format_fields, measure, plain_pixelcnn

    img = {"height": 8, "width": 8, **meta.get("config", {}), **(meta.get("image") or {})}
    img.setdefault("channels", 1)
    img.setdefault("levels", 256)
    if args.receptive_field == "auto":
        h, w = min(8, img["height"]), min(8, img["width"])
    else:
        try:
            h, w = (int(v) for v in args.receptive_field.lower().split("x"))
        except ValueError:
            raise PixelrtError(f"--receptive-field takes HxW, e.g. 6x6, got {args.receptive_field!r}") from None
        if h < 2 or w < 2 or h > 16 or w > 16:
            raise PixelrtError(f"--receptive-field {h}x{w}: use 2..16 per side (the Jacobian has (HW)^2 entries)")
    shape = (img["channels"], h, w)
    reports = [measure(model, f"{meta['family']} (this checkpoint)", shape, seed=args.seed)]
    if meta["family"] != "pixelcnn":
        reports.append(measure(plain_pixelcnn(img["channels"], img["levels"]), "pixelcnn (default, reference)", shape))
    print(format_fields(reports))
    if args.json:
        Path(args.json).write_text(json.dumps([r.as_dict() for r in reports], indent=2) + "\n")
    bad = [r for r in reports if r.audit.violations]
    if bad:
        raise ParityError(f"causality violated: {', '.join(r.name for r in bad)} read later sub-pixels")
    return 0


def cmd_calibrate(args) -> int:
    from pixelrt.calibration.calibrate import calibrate_bundle
    from pixelrt.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    for flag in ("calib_images", "step_images", "heldout"):
        if getattr(args, flag) < 1:
            raise PixelrtError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    _, train, test, record = _split_data(args, bundle.manifest.data_record())
    t0 = time.perf_counter()
    res = calibrate_bundle(bundle.root, args.out, args.precision, test.x[: args.heldout],
                           calib_x=train.x[: args.calib_images], data_name=f"{record['spec']}",
                           method=args.method, overwrite=args.force, step_images=args.step_images,
                           step_feeds_max=args.step_feeds, progress=not args.no_progress)
    m = res.bundle.manifest.calibration["measured"]  # this run's own record, just written
    for method, bpd in res.candidates.items():
        print(f"  {method:10s} held-out {bpd:.5f} bits/dim ({(bpd - res.fp32_bpd) / res.fp32_bpd:+.2%})"
              + ("  <- kept" if method == res.method else ""))
    print(f"{args.precision} bundle written to {args.out} in {time.perf_counter() - t0:.1f} s"
          + (f" (method {res.method})" if res.method else ""))
    print(f"held-out bits/dim: fp32 {res.fp32_bpd:.5f}, {args.precision} {res.bpd:.5f} (delta {res.delta_bpd:+.2e}, "
          f"{m['relative_increase']:+.3%}; budget {m['budget_bits_per_dim']:.1e} -> "
          f"{'within' if m['within_budget'] else 'MISSED'}); step vs full max {m['step_vs_full_max_bits_per_dim']:.1e} "
          f"bits/dim; samples identical to fp32 {m['sample_agreement_with_fp32']:.1%}")
    return 0


def _precision_parity(args, model, x) -> int:
    from pixelrt.export.precision_check import run_precision_parity
    from pixelrt.runtime.backends import RUNTIMES
    from pixelrt.bundle import load_bundle

    runtimes = tuple(r.strip() for r in args.runtimes.split(",") if r.strip())
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown or not runtimes:
        raise PixelrtError(f"--runtimes {args.runtimes!r}: choose from {', '.join(RUNTIMES)}")
    bundles = [load_bundle(b) for b in args.bundle]
    report = run_precision_parity(model, bundles, x, samples=args.samples, teacher=args.teacher, seed=args.seed,
                                  runtimes=runtimes, progress=not args.no_progress)
    print(report.table())
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    report.raise_on_miss()
    return 0


def cmd_bench(args) -> int:
    from pixelrt.export.bench import run_bench

    if args.runtime:  # GPU runtimes next to ORT CPU (runtime/gpu_bench.py)
        from pixelrt.export.bench import run_gpu_bench

        run_gpu_bench(args.runtime, [int(b) for b in (args.batches or "1,64").split(",") if b.strip()],
                      model=args.model, rows=args.rows, json_path=args.json)
        return 0
    if args.model == "pp32":
        from pixelrt.export.bench_pixelcnnpp import run_pixelcnnpp_bench

        batches = [int(b) for b in (args.batches or "1,4,16,64").split(",") if b.strip()]
        run_pixelcnnpp_bench(batches, json_path=args.json, rows=args.rows or 4, naive_pixels=max(2, args.naive_rows),
                             threads=args.threads)
        return 0
    if args.model == "vae28":
        from pixelrt.export.vae_bench import run_vae_bench

        batches = [int(b) for b in (args.batches or "1,64,1024").split(",") if b.strip()]
        run_vae_bench(batches, json_path=args.json, threads=args.threads)
        return 0
    batches = [int(b) for b in (args.batches or "1,64").split(",") if b.strip()]
    if args.model == "pvae28":  # export/bench_pixelvae.py
        from pixelrt.export.bench_pixelvae import run_pixelvae_bench

        run_pixelvae_bench(batches, naive_rows=args.naive_rows, threads=args.threads)
        return 0
    if args.model == "multiscale":  # export/bench_multiscale.py
        from pixelrt.export.bench_multiscale import run_ms_bench

        run_ms_bench(batches, naive_rows=args.naive_rows, threads=args.threads)
        return 0
    if args.model in ("rowlstm", "diagbilstm"):  # the PixelRNN family: export/bench_pixelrnn.py
        from pixelrt.export.bench_pixelrnn import run_rnn_bench

        run_rnn_bench(args.model, batches, naive_rows=args.naive_rows, rows=args.rows, threads=args.threads)
        return 0
    precisions = tuple(p.strip() for p in args.precisions.split(",") if p.strip())
    if args.model != "ref28" and precisions != ("fp32",):  # calibrated copies are benchmarked on ref28
        print(f"note: --precisions applies to ref28; {args.model} is timed in fp32 only")
        precisions = ("fp32",)
    run_bench(batches, json_path=args.json, naive_rows=args.naive_rows, rows=args.rows, threads=args.threads,
              model=args.model, precisions=precisions)
    return 0


def cmd_demo(args) -> int:
    from pixelrt.demo import run_demo

    return run_demo(Path(args.out), minutes=args.minutes)
