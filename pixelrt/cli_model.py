"""The CLI's model-side commands: train, export, parity (incl. --receptive-field and the precision
table), calibrate, bench and demo. Torch-side modules are imported inside each command, so this
module's top level stays torch-free (tests/runtime/test_no_torch.py lists which commands may)."""
from __future__ import annotations

import time
from pathlib import Path

from pixelrt import console
from pixelrt.atomic import check_replaceable, is_bundle, is_checkpoint
from pixelrt.cli_common import _condition_overrides, _model_context, _parse_overrides, _split_data, check_pair
from pixelrt.errors import ParityError, PixelrtError
from pixelrt.outputs import check_outputs


def cmd_train(args) -> int:
    from pixelrt.models import get_model
    from pixelrt.models.train import TrainConfig, checkpoint_meta, train

    ds, tr, te, record = _split_data(args)
    entry = get_model(args.model)
    C, H, W = ds.shape
    from dataclasses import fields

    # a config with an image size (a VAE's dense layers fix the geometry) takes the data's
    sizes = {k: v for k, v in (("height", H), ("width", W)) if k in {f.name for f in fields(entry.config_cls)}}
    config = entry.make_config(**{"channels": C, "levels": ds.levels, **sizes, **_condition_overrides(args, entry, ds),
                                  **_parse_overrides(args.set)})
    if (config.channels, config.levels) != (C, ds.levels) or any(getattr(config, k) != v for k, v in sizes.items()):
        raise PixelrtError(f"--set channels/levels/height/width disagree with the data ({C}x{H}x{W}, "
                           f"{ds.levels} levels); leave them to the data")
    out = Path(args.out)
    check_replaceable(out, args.force, protect=[args.data if Path(str(args.data)).exists() else None],
                      accept=is_checkpoint, what="checkpoint")  # now, not after the first epoch
    check_outputs([args.json], protect=[out])
    try:
        model = entry.build(config)
    except ValueError as e:
        raise PixelrtError(f"model config is invalid: {e}") from None
    from pixelrt.bundle import ImageSpec
    from pixelrt.models.contract import check_exportable

    check_exportable(model, ImageSpec(C, H, W, ds.levels))  # refuse now what export would refuse after training
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
    result = train(model, tr, te, cfg, out, checkpoint_meta(tr, te, record), progress=console.progress(args),
                   log=console.log.info)  # epoch lines: diagnostics on stderr; the summary below is the result
    if result.best_epoch < 1:
        raise PixelrtError(f"training stopped before the first epoch ended (--minutes {args.minutes}); no checkpoint "
                           "was written: give it more time")
    print(f"best held-out {result.best_bits_per_dim:.4f} {getattr(model, 'metric', 'bits/dim')} at epoch {result.best_epoch} "
          f"({result.seconds:.0f} s); checkpoint: {out}")
    console.emit_json(args.json, {"command": "train", "model": args.model, "checkpoint": str(out),
                                  "best_epoch": result.best_epoch, "best_held_out": result.best_bits_per_dim,
                                  "metric": getattr(model, "metric", "bits/dim"), "seconds": result.seconds,
                                  "history": result.history})
    return 0


def cmd_export(args) -> int:
    """Every family, one path: the model's export spec, traced, validated, moved into place."""
    from pixelrt.bundle import ImageSpec
    from pixelrt.export import export_bundle
    from pixelrt.models.checkpoint import load_checkpoint

    check_replaceable(args.out, args.force, protect=[args.checkpoint], accept=is_bundle, what="bundle")
    model, meta = load_checkpoint(args.checkpoint)
    image = ImageSpec(**meta["image"])
    _, _, test, record = _split_data(args, meta.get("data"))
    t0 = time.perf_counter()
    with console.Steps("export", args) as steps:
        result = export_bundle(model, image, test.x[: args.reference], args.out, overwrite=args.force, log=steps,
                               source={"checkpoint": str(args.checkpoint), "data": record,
                                       "weights_sha256": meta["weights"]["sha256"]},
                               wavefront=not args.no_wavefront, **_model_context(model, test, args.reference))
    files = sorted(result.bundle.manifest.files)
    print(f"{result.bundle.kind} bundle written to {args.out} in {time.perf_counter() - t0:.1f} s: "
          f"{', '.join(files)}, manifest.json")
    rows = result.report.rows
    worst = max(rows, key=lambda r: 0.0 if r.budget is None or r.higher_is_better else r.max / r.budget)
    print(f"validated ({len(rows)} checks within budget, ONNX Runtime vs PyTorch at an untraced batch, step loop vs "
          f"full graph, causality): tightest {worst.check} {worst.max:.1e} {worst.unit} (budget {worst.budget:.0e})")
    return 0


def cmd_parity(args) -> int:
    from pixelrt.bundle import load_bundle
    from pixelrt.models.checkpoint import load_checkpoint
    from pixelrt.parity.options import ParityOptions
    from pixelrt.parity.table import PARITY, kind_of, lookup

    if args.png and args.receptive_field is None:
        raise PixelrtError("--png draws the receptive-field maps; add --receptive-field")
    check_outputs([args.json, args.png], protect=[args.checkpoint, *(args.bundle or [])])
    model, meta = load_checkpoint(args.checkpoint)
    if args.receptive_field is not None:
        return _receptive_field(args, model, meta)
    _, _, test, record = _split_data(args, meta.get("data"))
    opts = ParityOptions.from_args(args, meta, record)
    bundles = [load_bundle(b) for b in args.bundle or []]
    for b in bundles:
        check_pair(args.checkpoint, meta, b)
    if len(bundles) > 1 or any(b.precision != "fp32" for b in bundles):
        return _precision_parity(args, model, test, opts, bundles)  # reduced precision: the precision table
    parity = lookup(PARITY, kind_of(model), "pixelrt parity")
    return _report(parity(model, bundles[0] if bundles else None, test, opts), args.json)


def _report(report, json_path) -> int:
    """Print a parity report (and write it as JSON); a miss beyond budget raises ParityError (exit 1)."""
    print(report.table())
    console.emit_json(json_path, report.as_dict())
    report.raise_on_miss()
    return 0


def _receptive_field(args, model, meta) -> int:
    from pixelrt.parity.receptive_field import format_fields, save_field_maps
    from pixelrt.parity.table import FIELDS, kind_of, lookup

    size = None
    if args.receptive_field != "auto":
        try:
            size = tuple(int(v) for v in args.receptive_field.lower().split("x"))
            h, w = size
        except ValueError:
            raise PixelrtError(f"--receptive-field takes HxW, e.g. 6x6, got {args.receptive_field!r}") from None
        if h < 2 or w < 2 or h > 16 or w > 16:
            raise PixelrtError(f"--receptive-field {h}x{w}: use 2..16 per side (the Jacobian has (HW)^2 entries)")
    reports = lookup(FIELDS, kind_of(model), "pixelrt parity --receptive-field")(model, meta, size, args.seed)
    print(format_fields(reports))
    if args.png:
        print(f"receptive-field maps: {save_field_maps(reports, args.png)}")
    console.emit_json(args.json, [r.as_dict() for r in reports])
    bad = [r for r in reports if r.audit.violations]
    if bad:
        raise ParityError(f"causality violated: {', '.join(r.name for r in bad)} read later sub-pixels")
    return 0


def cmd_calibrate(args) -> int:
    from pixelrt.calibration.calibrate import calibrate_bundle
    from pixelrt.bundle import load_bundle

    check_outputs([args.json], protect=[args.bundle])
    bundle = load_bundle(args.bundle)
    check_replaceable(args.out, args.force, protect=[bundle.root], accept=is_bundle, what="bundle")
    _, train, test, record = _split_data(args, bundle.manifest.data_record())
    t0 = time.perf_counter()
    res = calibrate_bundle(bundle.root, args.out, args.precision, test.x[: args.heldout],
                           calib_x=train.x[: args.calib_images], data_name=f"{record['spec']}",
                           method=args.method, overwrite=args.force, step_images=args.step_images,
                           step_feeds_max=args.step_feeds, progress=console.progress(args), log=console.log.info)
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
    console.emit_json(args.json, {"command": "calibrate", "bundle": str(args.out), "precision": args.precision,
                                  "method": res.method, "candidates": res.candidates, "measured": m})
    return 0


def _precision_parity(args, model, test, opts, bundles) -> int:
    from dataclasses import replace

    from pixelrt.parity.table import PRECISION, kind_of, lookup
    from pixelrt.runtime.backends import RUNTIMES

    runtimes = tuple(r.strip() for r in args.runtimes.split(",") if r.strip())
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown or not runtimes:
        raise PixelrtError(f"--runtimes {args.runtimes!r}: choose from {', '.join(RUNTIMES)}")
    table = lookup(PRECISION, kind_of(model), "the precision table (several --bundle, or an fp16/int8 one)")
    return _report(table(model, bundles, test, replace(opts, runtimes=runtimes)), args.json)


def cmd_bench(args) -> int:
    from pixelrt.bench.run import BenchOptions, run_benchmark, run_gpu_bench
    from pixelrt.bench.specs import bench_spec, parse_batches

    spec = bench_spec(args.model)  # one row of bench/specs.py; an unknown name lists the known ones
    batches = parse_batches(args.batches or spec.batches)
    if args.runtime:  # GPU runtimes next to ORT CPU (runtime/gpu_bench.py)
        run_gpu_bench(args.runtime, batches, model=args.model, rows=args.rows, json_path=args.json)
        return 0
    run_benchmark(spec, batches, BenchOptions.from_args(args))
    return 0


def cmd_demo(args) -> int:
    from pixelrt.demo import run_demo

    return run_demo(Path(args.out), minutes=args.minutes)
