"""The CLI's bundle-side commands: sample, eval, interpolate, info and verify. Each hands the bundle to its
kind's pipeline (``runtime/pipelines/``) and imports what it needs when it runs, so all of them work on a
runtime-only install without torch. The parser is in cli.py."""
from __future__ import annotations

import numpy as np

from pixelrt.cli_common import _split_data
from pixelrt.errors import ParityError, PixelrtError


def cmd_sample(args) -> int:
    if args.url is not None:  # a Triton server holds the bundle (pixelrt/serve_cli.py)
        from pixelrt.serve_cli import cmd_remote_sample

        return cmd_remote_sample(args)
    if args.bundle is None:
        raise PixelrtError("name the bundle to sample, or give --url URL of a pixelrt model on a Triton server")
    from pixelrt import console
    from pixelrt.argtypes import check_memory
    from pixelrt.bundle import load_bundle
    from pixelrt.outputs import check_outputs, write_npz
    from pixelrt.runtime.grid import save_grid
    from pixelrt.runtime.pipelines import pipeline

    check_outputs([args.out, args.npz, args.json], protect=[args.bundle])  # before any work
    bundle = load_bundle(args.bundle)
    pipe = pipeline(bundle)  # the bundle's kind decides how it samples (runtime/pipelines/)
    if args.mean:
        pipe.require(bundle, "mean", "--mean")
    image = bundle.image
    # noise, images and log-probs of every image stay in memory until the grid is written
    check_memory(f"sampling {args.num} images of {'x'.join(map(str, image.shape))}",
                 args.num * image.channels * image.height * image.width * 16, "-n")
    context = {}
    if args.label is not None:
        if "label" not in bundle.context:
            raise PixelrtError(f"--label: the bundle {args.bundle} is not label-conditional; drop --label")
        from pixelrt.runtime.conditioning import parse_labels

        context["label"] = parse_labels(args.label, args.num)
    elif "label" in bundle.context:
        raise PixelrtError("this bundle is label-conditional; pass --label (e.g. --label 3, or --label 0-9 for "
                           "one block of images per class)")
    res = pipe.sample(bundle, args.num, args.seed, context=context or None, runtime=args.runtime,
                      batch_size=args.batch_size, progress=console.progress(args), mean=args.mean,
                      **({"loop": args.loop} if args.loop != "auto" else {}))
    blocks = len(set(context["label"])) if "label" in context else 1  # one grid row per label block
    columns = args.num // blocks if blocks > 1 else None
    save_grid(res.images, image.levels, args.out, columns=columns,
              row_labels=[f"label {l}" for l in context["label"][::columns]] if columns else None)
    if args.npz:
        write_npz(args.npz, protect=[args.bundle], **res.arrays(), seed=args.seed)
    print(f"{res.summary()}; grid: {args.out}")
    record = {"command": "sample", "bundle": str(args.bundle), "images": len(res.images), "seed": args.seed,
              "runtime": res.runtime, "seconds": res.seconds, "grid": str(args.out), "npz": args.npz}
    if res.bits_per_dim is not None:
        record["bits_per_dim"] = float(np.mean(res.bits_per_dim))
    console.emit_json(args.json, record, protect=[args.bundle])
    return 0


def cmd_eval(args) -> int:
    from pixelrt import console
    from pixelrt.bundle import load_bundle
    from pixelrt.outputs import check_outputs
    from pixelrt.runtime.conditioning import data_context
    from pixelrt.runtime.pipelines import pipeline

    check_outputs([args.json], protect=[args.bundle])
    bundle = load_bundle(args.bundle)
    pipe = pipeline(bundle)
    if args.iwae is not None:
        pipe.require(bundle, "iwae", "--iwae")
    ds, tr, te, record = _split_data(args, bundle.manifest.data_record())
    part = {"test": te, "train": tr, "all": ds}[args.split]
    scores = pipe.evaluate(bundle, part.x, context=data_context(bundle.context, part),  # labels from the data set
                           runtime=args.runtime, batch_size=args.batch_size, progress=console.progress(args), iwae=args.iwae,
                           seed=args.seed, source=f"{record['spec']} ({args.split} split)")
    for line in scores.rows():
        print(line)
    record = {"command": "eval", "bundle": str(args.bundle), "split": args.split, **scores.summary()}
    try:
        check = pipe.check_reference(bundle, args.runtime)  # ParityError (exit 1) beyond budget
    except ParityError as e:
        console.emit_json(args.json, {**record, "reference_check": {"ok": False, "error": str(e)}},
                          protect=[args.bundle])
        raise
    print(check.line())
    console.emit_json(args.json, {**record, "reference_check": {"ok": True, "drift_bits_per_dim": check.drift,
                                                                "budget": check.budget}}, protect=[args.bundle])
    return 0


def cmd_interpolate(args) -> int:
    from pixelrt.bundle import load_bundle
    from pixelrt.outputs import check_outputs
    from pixelrt.runtime.grid import save_grid
    from pixelrt.runtime.pipelines import pipeline

    check_outputs([args.out], protect=[args.bundle])
    bundle = load_bundle(args.bundle)
    pipe = pipeline(bundle)
    pipe.require(bundle, "interpolate")
    ds, tr, te, _ = _split_data(args, bundle.manifest.data_record())
    x = {"test": te, "train": tr, "all": ds}[args.split].x
    for i in args.pair:
        if not 0 <= i < len(x):
            raise PixelrtError(f"--pair index {i} is out of range: the {args.split} split has {len(x)} images "
                               f"(0..{len(x) - 1})")
    a, b = args.pair
    res = pipe.interpolate(bundle, x[[a, b]], args.steps, args.seed, runtime=args.runtime)
    save_grid(res.images, bundle.image.levels, args.out, columns=len(res.images))
    print(f"interpolated {args.split} images {a} -> {b} in {args.steps} steps ({res.description}); grid: {args.out}")
    return 0


def cmd_info(args) -> int:
    from pixelrt.bundle import FORMAT_VERSION, load_bundle, sub_bundles
    from pixelrt.runtime.graph_check import check_bundle_graphs

    from pixelrt.outputs import check_outputs

    check_outputs([args.json], protect=[args.bundle])
    b = load_bundle(args.bundle)
    m = b.manifest
    checked = check_bundle_graphs(b)
    print(f"{b.root}: {b.family} bundle ({b.kind}), format {FORMAT_VERSION}, precision {b.precision}")
    if m.calibration is not None:  # written by `pixelrt calibrate`
        cal = m.calibration
        meas = cal.get("measured") if isinstance(cal.get("measured"), dict) else {}
        num = lambda k: meas.get(k) if isinstance(meas.get(k), (int, float)) else float("nan")  # noqa: E731
        cset = cal.get("calibration_set") if isinstance(cal.get("calibration_set"), dict) else {}
        print(f"  calibrated: method {cal.get('method') or '-'}, set {cset.get('name', '-')}; held-out bits/dim fp32 "
              f"{num('bits_per_dim_fp32'):.5f} -> {num('bits_per_dim_' + b.precision):.5f}")
    print(f"  image {'x'.join(map(str, b.image.shape))}, {b.image.levels} levels, head {m.head.kind}")
    if m.latent is not None:
        print(f"  kind {b.kind}: latent {m.latent.size}, {m.latent.prior} prior, {m.latent.posterior} posterior; reference bits/dim "
              "below are the ELBO's")
    for name, part in m.parts.items():
        print(f"  part {name}: {part.dir}/ ({part.role}"
              + (f"; context {part.context}" if part.context else "") + ")")
    parts = [b] + [sub for _, sub in sub_bundles(b)]  # multi-scale stages, PixelVAE's PixelCNN
    for part in parts:
        for name, g in part.graphs.items():
            rec = m.files[part.prefix + g.file]
            print(f"  {name:5s} {part.prefix + g.file:10s} {rec.bytes / 1024:8.1f} KiB  sha256 {rec.sha256[:12]}  "
                  f"inputs {', '.join(g.input_names())}")
    states = [s for part in parts for s in part.state]
    state_bytes = sum(s.bytes_per_image for s in states)
    kinds = sorted({s.update for s in states})
    print(f"  state: {len(states)} {'/'.join(kinds) or 'ring-row'} state tensors, {state_bytes / 1024:.1f} KiB per image")
    front = m.schedule.wavefront if m.schedule else None
    if front is not None:
        C, H, W = b.image.shape
        print(f"  sampling: wavefront graph {front.graph!r}, lag {front.lag}, {front.layout}: {front.calls(H, W)} calls "
              f"per sub-step instead of {H * W} on ORT (--loop raster: one pixel per call)")
    print(f"  reference bits/dim: {', '.join(f'{v:.4f}' for v in m.reference.bits_per_dim)}")
    print(f"  manifest valid; {len(m.files)} files inside the bundle, checksums verified; {checked} graphs match the "
          "manifest")
    from pixelrt import console

    console.emit_json(args.json, {
        "bundle": str(b.root), "kind": b.kind, "family": b.family, "precision": b.precision,
        "format_version": FORMAT_VERSION, "image": b.image.to_json(), "head": m.head.kind,
        "graphs": {part.prefix + name: {"file": part.prefix + g.file, "bytes": m.files[part.prefix + g.file].bytes,
                                        "sha256": m.files[part.prefix + g.file].sha256, "inputs": g.input_names()}
                   for part in parts for name, g in part.graphs.items()},
        "state_bytes_per_image": state_bytes, "reference_bits_per_dim": list(m.reference.bits_per_dim),
        "files": len(m.files), "checksums_verified": True}, protect=[args.bundle])
    return 0


def cmd_verify(args) -> int:
    from pixelrt import console
    from pixelrt.bundle import load_bundle
    from pixelrt.outputs import check_outputs
    from pixelrt.runtime.bundle_checks import verify_bundle

    check_outputs([args.json], protect=[args.bundle])
    bundle = load_bundle(args.bundle)  # manifest, containment, every checksum
    report = verify_bundle(bundle, args.runtime, samples=args.samples, seed=args.seed)
    print(report.table())
    console.emit_json(args.json, report.as_dict(), protect=[args.bundle])
    report.raise_on_miss()  # ParityError: exit 1
    print(f"{bundle.root}: all {len(report.rows)} checks within budget on {args.runtime}")
    return 0
