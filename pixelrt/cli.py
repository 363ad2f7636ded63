"""The `pixelrt` command: the parser, `main`, and the bundle-side commands (sample, eval, interpolate,
info). Sample, eval and interpolate hand every bundle kind to its pipeline (``runtime/pipelines/``, the
one kind table), which also says which kind-specific options apply. Model-side commands live in
cli_model.py, shared helpers in cli_common.py. Each subcommand imports what it needs when it runs, so
`pixelrt sample` and `pixelrt eval` work on a runtime-only install without torch.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from pixelrt.argtypes import int_range, nonnegative, nonnegative_float, positive, positive_float, seed
from pixelrt.cli_common import _add_data_args, _add_runtime_arg, _add_trt_options, _split_data, apply_runtime_options
from pixelrt.cli_model import cmd_bench, cmd_calibrate, cmd_demo, cmd_export, cmd_parity, cmd_train
from pixelrt.errors import ParityError, PixelrtError

DESCRIPTION = """\
pixelrt: train autoregressive image models in PyTorch, export them to ONNX
bundles, and sample/evaluate them in ONNX Runtime with likelihood parity.

typical flow:
  pixelrt train --data digits -o runs/pixelcnn        # checkpoint (safetensors + JSON)
  pixelrt export runs/pixelcnn -o bundles/pixelcnn    # full.onnx + step.onnx + manifest
  pixelrt sample bundles/pixelcnn -n 16 -o samples.png
  pixelrt eval bundles/pixelcnn --data digits         # held-out bits/dim
  pixelrt parity runs/pixelcnn --data digits          # PyTorch vs ORT, step vs full
  pixelrt calibrate bundles/pixelcnn --precision int8 -o bundles/pixelcnn-int8   # FP16 / INT8 Q/DQ bundle
  pixelrt demo                                        # all of the above in one go

models (--model NAME): every registered family (models/__init__.py; an unknown name lists
  them), e.g. pixelcnn, gated (label-conditional with --condition label), pixelcnnpp, rowlstm,
  diagbilstm, multiscale, vae, pixelvae; the same commands drive each. Your own model:
  docs/export-your-model.md.
VAE (docs/vae.md): pixelrt train --model vae, then export / sample [--mean] /
  interpolate --pair A B / eval --iwae K / parity on its checkpoint and bundle.
  --model pixelvae: the same commands, p(x|z) a Gated PixelCNN conditioned on z.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixelrt", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"pixelrt {__import__('pixelrt').__version__}")
    _add_global_flags(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train a model on a data set and keep the best checkpoint",
                       description="Train with AdamW on bits/dim; held-out bits/dim is measured every epoch and "
                                   "the best checkpoint (safetensors + JSON, never pickle) is kept at -o.")
    _add_data_args(p)
    p.add_argument("--model", default="pixelcnn", help="registered model (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="model config override, e.g. --set hidden=64 --set blocks=8 (repeatable)")
    p.add_argument("-o", "--out", required=True, help="checkpoint folder to write")
    p.add_argument("--condition", choices=["none", "label"], default="none",
                   help="label: condition on the data set's class labels (models with num_classes, e.g. gated); "
                        "the number of classes is max label + 1 (default: %(default)s)")
    p.add_argument("--epochs", type=positive, default=None, help="passes over the training split (default: 15; gated: 10)")
    p.add_argument("--minutes", type=positive_float, default=None, help="wall-clock budget; stops early when reached")
    p.add_argument("--batch-size", type=positive, default=64, help="images per optimiser step (default: %(default)s)")
    p.add_argument("--lr", type=positive_float, default=None, help="learning rate (default: 2e-3)")
    p.add_argument("--weight-decay", type=nonnegative_float, default=None, help="AdamW weight decay (default: 0.1)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the initial weights and the batch order (default: 0)")
    p.add_argument("--force", action="store_true", help="replace an existing checkpoint at -o (only a pixelrt checkpoint)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="write the training summary (best epoch, bits/dim, history) as JSON; - for stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="export a checkpoint to a bundle (full + step ONNX graphs, manifest)",
                       description="Every family through one exporter: trace the graphs the model's export spec "
                                   "lists (full and step graphs, a per-row graph, a composite's parts), store the "
                                   "reference likelihoods of real images, then validate: every graph ONNX Runtime vs "
                                   "PyTorch at another batch size, the teacher-forced step loop vs the full graph, "
                                   "sampled log-probs vs the full log-likelihood, a causality probe. Only a bundle "
                                   "within every budget is moved into place (atomic). Your own model: "
                                   "docs/export-your-model.md.")
    p.add_argument("checkpoint", help="checkpoint folder written by `pixelrt train`")
    p.add_argument("-o", "--out", required=True, help="bundle folder to write")
    p.add_argument("--data", default=None, help="data for the reference batch (default: the checkpoint's data set)")
    p.add_argument("--reference", type=int_range(1, 4096), default=8,
                   help="held-out images whose log-likelihoods are stored in the bundle as its reference (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at -o (only a pixelrt bundle)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("sample", help="sample images with a bundle's step graph and write a PNG grid",
                       description="Runs the autoregressive step loop; sampling happens inside the graph from "
                                   "uniform noise drawn up-front from --seed, so a seed gives the same images on "
                                   "every runtime.")
    p.add_argument("bundle")
    p.add_argument("-n", "--num", type=int_range(1, 1_000_000), default=16, help="images to sample (default: %(default)s)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the sampling noise: one seed, the same images on every runtime (default: 0)")
    p.add_argument("-o", "--out", default="samples.png", help="PNG grid to write (default: %(default)s)")
    p.add_argument("--npz", default=None, help="also save images and per-sub-pixel log-probs to this .npz")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="write a summary record (images, seed, runtime, seconds, bits/dim) as JSON; - for stdout")
    p.add_argument("--label", default=None,
                   help="class label(s) for a label-conditional bundle: one index for every image (--label 3), or "
                        "a list / range (--label 0,3,7 or 0-9) giving each label an equal block of the -n images, "
                        "one grid row per label")
    p.add_argument("--batch-size", type=int_range(1, 65536), default=64, help="images per step-loop call (default: %(default)s)")
    p.add_argument("--mean", action="store_true",
                   help="VAE bundles: write the decoder mean of each z instead of a sample of p(x|z)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_runtime_arg(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("interpolate", help="VAE / PixelVAE: decode the straight line between two images' latents",
                       description="Encodes two images of --data (indices into --split), decodes the decoder mean "
                                   "at --steps evenly spaced points between their posterior means, and writes one "
                                   "row: the first image, the decoded points, the second image. A PixelVAE has no "
                                   "closed-form mean: each point is a sample given its z, all drawn with the same "
                                   "step-loop noise (--seed), so only z changes along the row.")
    p.add_argument("bundle", help="VAE or PixelVAE bundle written by `pixelrt export`")
    _add_data_args(p, default=None)
    p.add_argument("--split", choices=["test", "train", "all"], default="test",
                   help="which images --pair indexes (default: %(default)s, the held-out split)")
    p.add_argument("--pair", type=nonnegative, nargs=2, default=[0, 1], metavar=("A", "B"),
                   help="indices of the two images (default: 0 1)")
    p.add_argument("--steps", type=int_range(2, 1000), default=10, help="decoded points, end points included (default: %(default)s)")
    p.add_argument("-o", "--out", default="interpolation.png", help="PNG to write (default: %(default)s)")
    p.add_argument("--seed", type=seed, default=0, help="PixelVAE bundles: seed of the shared step-loop noise")
    _add_runtime_arg(p)
    p.set_defaults(func=cmd_interpolate)

    p = sub.add_parser("eval", help="bits/dim of a data set under a bundle's full graph",
                       description="Exact log-likelihood through full.onnx; reports bits/dim on the held-out split.")
    p.add_argument("bundle")
    _add_data_args(p, default=None)
    p.add_argument("--split", choices=["test", "train", "all"], default="test")
    p.add_argument("--batch-size", type=int_range(1, 65536), default=256, help="images per call (VAE: latents per decoder call)")
    p.add_argument("--iwae", type=int_range(1, 100_000), default=None, metavar="K",
                   help="VAE bundles: ELBO and importance-weighted bounds IWAE-1, 10, ... K (default: 100)")
    p.add_argument("--seed", type=seed, default=0, help="VAE bundles: seed of the latent noise (default: 0)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="write the scores' summary and the reference check as JSON; - for stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_runtime_arg(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("parity", help="compare a checkpoint with its bundle (bits/dim, step vs full, samples)",
                       description="Prints one table: PyTorch vs ORT bits/dim per image, step-graph vs full-graph "
                                   "conditionals, summed sample log-probs vs full log-likelihood, samples under "
                                   "shared noise, and the causality audit. Exits 1 on any miss beyond budget.")
    p.add_argument("checkpoint")
    p.add_argument("--bundle", action="append", default=None,
                   help="bundle to compare (default: export one to a temporary folder); repeat it to compare "
                        "several (e.g. FP32, FP16, INT8) in one precision table: runtime x precision -> bits/dim, "
                        "delta vs FP32 PyTorch, max |d log p|, step vs full, sample agreement")
    p.add_argument("--runtimes", default="ort",
                   help="with several bundles: comma-separated runtimes to run each in (default: %(default)s)")
    _add_data_args(p, default=None)
    p.add_argument("-n", "--num", type=int_range(1, 100_000), default=64, help="held-out images compared (default: %(default)s)")
    p.add_argument("--samples", type=int_range(1, 10_000), default=8, help="images sampled (default: %(default)s)")
    p.add_argument("--teacher", type=int_range(1, 10_000), default=8, help="images run teacher-forced through the step graph (default: %(default)s)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the sampled images and of the VAE latents (default: 0)")
    p.add_argument("--iwae", type=int_range(1, 100_000), default=None, metavar="K",
                   help="VAE checkpoints: compare ELBO and IWAE-1, 10, ... K per image (default: 100)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the report as JSON; - for stdout")
    p.add_argument("--receptive-field", nargs="?", const="auto", default=None, metavar="HxW",
                   help="only measure the receptive field by autograd Jacobian on an HxW image (default: the "
                        "model's size, at most 8x8), beside a plain PixelCNN's; exits 1 on a causality violation")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_runtime_arg(p)
    p.set_defaults(func=cmd_parity)

    p = sub.add_parser("calibrate", help="write an FP16 or INT8 (Q/DQ) copy of a bundle, judged by its bits/dim",
                       description="FP16: the network runs in half precision; its logits layer, the likelihood tail (log-softmax, "
                                   "sampling, reductions) and the graph I/O stay FP32. INT8: static quantization "
                                   "with explicit QuantizeLinear/DequantizeLinear (symmetric, per-channel weights), "
                                   "calibrated on training-split images (full graph) and on the step loop's feeds "
                                   "recorded teacher-forced on them (step graph). The new bundle is measured on the "
                                   "held-out split and written atomically; see docs/precision.md.")
    p.add_argument("bundle", help="FP32 bundle written by `pixelrt export`")
    p.add_argument("--precision", required=True, choices=["fp16", "int8"], help="target precision")
    p.add_argument("-o", "--out", required=True, help="bundle folder to write")
    p.add_argument("--method", default="auto", choices=["minmax", "entropy", "percentile", "auto"],
                   help="INT8 calibration method; auto tries each and keeps the smallest held-out bits/dim "
                        "(default: %(default)s)")
    _add_data_args(p, default=None)
    p.add_argument("--calib-images", type=int_range(1, 100_000), default=256,
                   help="training-split images used to calibrate INT8 ranges (default: %(default)s)")
    p.add_argument("--step-images", type=int_range(1, 100_000), default=64,
                   help="of those, images run teacher-forced through the step loop to record step feeds "
                        "(default: %(default)s)")
    p.add_argument("--step-feeds", type=int_range(1, 1_000_000), default=256,
                   help="recorded step calls kept, spread evenly over the raster (default: %(default)s)")
    p.add_argument("--heldout", type=int_range(1, 1_000_000), default=512, help="held-out images measured (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at -o (only a pixelrt bundle)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="write the measured bits/dim of each method and the kept one as JSON; - for stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("info", help="show a bundle's manifest summary and verify its checksums")
    p.add_argument("bundle", help="bundle folder written by `pixelrt export` or `pixelrt calibrate`")
    p.add_argument("--json", default=None, metavar="PATH", help="write the manifest summary as JSON; - for stdout")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("verify", help="check a bundle on this machine's runtime against its export (no torch)",
                       description="The check to run on the deployment machine itself (a Jetson, a server): the "
                                   "bundle's graphs on --runtime against the reference log-likelihoods PyTorch "
                                   "measured at export, the teacher-forced step loop against the full graph, "
                                   "sampled log-probs against their full-graph log-likelihood and a causality "
                                   "probe, as one table with budgets. Exits 1 on any miss. Needs only the "
                                   "runtime extra.")
    p.add_argument("bundle", help="bundle folder written by `pixelrt export` or `pixelrt calibrate`")
    p.add_argument("--samples", type=int_range(1, 64), default=2,
                   help="images sampled for the sampled-vs-full check (default: %(default)s)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the sampling noise (default: 0)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the table as JSON; - for stdout")
    _add_runtime_arg(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("bench", help="time naive vs cached sampling (PyTorch, ORT) on the ref28 model",
                       description="Reference model ref28: PixelCNN, 1x28x28, 256 levels, 2h=64, 8 residual "
                                   "blocks, random weights. Reports ms per image, FLOPs per pixel and the fraction "
                                   "of this CPU's matmul peak measured in the same run.")
    p.add_argument("--json", default=None, help="write one record per measurement to this file")
    p.add_argument("--model", default="ref28", choices=["ref28", "vae28", "pvae28", "rowlstm", "diagbilstm", "gated28", "pp32", "multiscale"],
                   help="ref28: the PixelCNN sampling benchmark; vae28: VAE decoder images/s, ORT vs PyTorch "
                        "(1x28x28, 256 levels, latent 16, random weights); pvae28: PixelVAE sampling z -> image (same "
                        "image and latent, features graph + conditioned Gated PixelCNN), naive vs cached; rowlstm / diagbilstm: naive vs cached "
                        "sampling of a PixelRNN at its default widths on 1x16x16, 256 levels; gated28: Gated "
                        "PixelCNN 1x28x28, 256 levels, F=32, 8 layers, head 64, random weights, naive vs cached "
                        "with its per-row graph; pp32: PixelCNN++ 3x32x32, 64 filters, 2 blocks per stage, "
                        "5 mixtures, naive vs cached in ORT beside the published Fast PixelCNN++ speed-ups; multiscale: "
                        "naive vs cached sampling of a Multi-Scale PixelRNN bundle, 1x16x16 (stage 1 on 8x8) "
                        "(default: %(default)s)")
    p.add_argument("--batches", default=None,
                   help="comma-separated batch sizes (default: 1,64 for ref28 and gated28; 1,64,1024 for vae28; "
                        "1,4,16,64 for pp32)")
    p.add_argument("--naive-rows", type=int_range(1, 4096), default=1, help="rows timed for the naive sampler (extrapolated)")
    p.add_argument("--rows", type=int_range(1, 4096), default=None, help="rows timed for cached sampling (default: all; pp32: 4)")
    p.add_argument("--threads", type=int_range(1, 1024), default=None,
                   help="intra-op threads for PyTorch and ONNX Runtime (default: each library's own choice)")
    p.add_argument("--precisions", default="fp32,fp16,int8",
                   help="ORT step-sampling rows per precision; fp16/int8 are `pixelrt calibrate` copies of the "
                        "bench bundle (default: %(default)s)")
    p.add_argument("--runtime", default=None, metavar="RT[,RT...]",
                   help="time step-loop sampling on GPU runtimes instead (trt, ort-cuda, ort-cuda-graph, ort-trt; "
                        "comma-separated) next to ORT CPU in the same run: us per step and ms per image for ref28 "
                        "or gated28. Needs a CUDA GPU; without one it exits with one error line (docs/gpu.md)")
    _add_trt_options(p)
    p.set_defaults(func=cmd_bench)

    from pixelrt.gpu_cli import add_commands as add_gpu_commands

    add_gpu_commands(sub)  # doctor, build-engine

    p = sub.add_parser("demo", help="train on digits, export, sample, evaluate and check parity in one go",
                       description="About two minutes on 2 CPU cores; every output lands in one folder.")
    p.add_argument("-o", "--out", default="demo_out", help="output folder (default: %(default)s)")
    p.add_argument("--minutes", type=positive_float, default=1.0, help="training budget in minutes (default: %(default)s)")
    p.set_defaults(func=cmd_demo)
    for command in sub.choices.values():  # -v / -q / --debug also after the command name
        _add_global_flags(command, suppress=True)
    return parser


def _add_global_flags(p: argparse.ArgumentParser, suppress: bool = False) -> None:
    default = (lambda value: argparse.SUPPRESS) if suppress else (lambda value: value)
    p.add_argument("-v", "--verbose", action="count", default=default(0),
                   help="more diagnostics on stderr (-vv: third-party libraries' logs too)")
    p.add_argument("-q", "--quiet", action="store_true", default=default(False),
                   help="only warnings, errors and the results; no progress bars")
    p.add_argument("--debug", action="store_true", default=default(False),
                   help="print the Python traceback of an error (for bug reports)")


# -- commands ------------------------------------------------------------------


def cmd_sample(args) -> int:
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
                      batch_size=args.batch_size, progress=console.progress(args), mean=args.mean)
    blocks = len(set(context["label"])) if "label" in context else 1  # one grid row per label block
    save_grid(res.images, image.levels, args.out, columns=args.num // blocks if blocks > 1 else None)
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


def main(argv: list[str] | None = None) -> int:
    """The `pixelrt` command: exit 0 ok, 1 a parity/budget miss, 2 a user or input error, 3 an internal
    error (pixelrt/faults.py); never a traceback unless --debug."""
    from pixelrt import console, faults
    from pixelrt.atomic import sweep_scratch

    args = build_parser().parse_args(argv)  # argparse itself exits 2 on a bad argument, with one message
    console.configure(args.verbose, args.quiet)
    faults.install_signal_handlers()
    sweep_scratch()  # scratch folders of killed runs

    def run(args) -> int:
        apply_runtime_options(args)
        with console.json_to_stdout(getattr(args, "json", None)):
            return args.func(args)

    return faults.run(args.command, run, args, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
