"""The `pixelrt` command: the parser and `main` (exit codes and faults: pixelrt/faults.py, docs/cli.md).

Bundle-side commands (sample, eval, interpolate, info, verify) live in cli_bundle.py, model-side ones
(train, export, parity, calibrate, bench, demo) in cli_model.py, shared helpers in cli_common.py, the GPU,
conversion and serving commands in gpu_cli.py, convert_cli.py and serve_cli.py. Each subcommand imports
what it needs when it runs, so the bundle-side commands work on a runtime-only install without torch.
"""
from __future__ import annotations

import argparse
import sys

from pixelrt.argtypes import int_range, nonnegative, nonnegative_float, positive, positive_float, seed
from pixelrt.cli_common import MODEL_NAMES, _add_data_args, _add_runtime_arg, _add_trt_options, apply_runtime_options
from pixelrt.cli_bundle import cmd_eval, cmd_info, cmd_interpolate, cmd_sample, cmd_verify
from pixelrt.cli_model import cmd_bench, cmd_calibrate, cmd_demo, cmd_export, cmd_parity, cmd_train

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


class Parser(argparse.ArgumentParser):
    """argparse with pixelrt's one-line errors: `pixelrt CMD: error: WHAT (see pixelrt CMD --help)`, exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="pixelrt", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"pixelrt {__import__('pixelrt').__version__}")
    _add_global_flags(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train a model on a data set and keep the best checkpoint",
                       description="Train with AdamW on bits/dim; held-out bits/dim is measured every epoch and "
                                   "the best checkpoint (safetensors + JSON, never pickle) is kept at -o.")
    _add_data_args(p)
    p.add_argument("--model", default="pixelcnn", metavar="NAME",
                   help=f"registered model: {', '.join(MODEL_NAMES)} (default: %(default)s)")
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
    p.add_argument("--no-wavefront", action="store_true",
                   help="leave out the wavefront graph (wave.onnx) of a family that has one: a smaller bundle that "
                        "samples one pixel per call, e.g. for TensorRT or Jetson, which never run it")
    p.add_argument("--reference", type=int_range(1, 4096), default=8,
                   help="held-out images whose log-likelihoods are stored in the bundle as its reference (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at -o (only a pixelrt bundle)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one log line per step instead)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("sample", help="sample images with a bundle's step graph and write a PNG grid",
                       description="Runs the autoregressive step loop; sampling happens inside the graph from "
                                   "uniform noise drawn up-front from --seed, so a seed gives the same images on "
                                   "every runtime.")
    p.add_argument("bundle", nargs="?", default=None, help="bundle folder (omit with --url)")
    p.add_argument("--url", default=None, metavar="URL",
                   help="sample from a pixelrt model on a Triton server instead (http://HOST:PORT or grpc://HOST:PORT; "
                        "`pixelrt serve`): the same images as the bundle gives locally (docs/serving.md)")
    p.add_argument("--model", default=None, help="with --url: the served model's name (default: the only one)")
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
    p.add_argument("--loop", choices=("auto", "raster", "wave"), default="auto",
                   help="step loop: wave runs several pixels of each image per call (bundles with a wavefront graph, "
                        "ORT), raster one pixel per call; the same images either way (default: %(default)s: wave "
                        "where the bundle and runtime have it)")
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
    p.add_argument("bundle", help="bundle folder written by `pixelrt export` or `pixelrt calibrate`")
    _add_data_args(p, default=None)
    p.add_argument("--split", choices=["test", "train", "all"], default="test",
                   help="which part of the data set split recorded at training time (default: %(default)s)")
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
    p.add_argument("checkpoint", help="checkpoint folder written by `pixelrt train`")
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
    p.add_argument("--png", default=None, metavar="PATH",
                   help="with --receptive-field: also draw the maps as a PNG (output pixel, pixels read, blind spot, "
                        "legend)")
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
    p.add_argument("--model", default="ref28", choices=["ref28", "vae28", "pvae28", "rowlstm", "diagbilstm", "gated28", "pp32", "multiscale", "plain28"],
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
    from pixelrt.convert_cli import add_commands as add_convert_commands

    add_convert_commands(sub)  # convert (plain PyTorch modules), import-pclucas (PixelCNN++ weights)
    from pixelrt.serve_cli import add_commands as add_serve_commands

    add_serve_commands(sub)  # triton, triton-check, serve

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


def main(argv: list[str] | None = None) -> int:
    """The `pixelrt` command: exit 0 ok, 1 a parity/budget miss, 2 a user or input error, 3 an internal
    error (pixelrt/faults.py); never a traceback unless --debug."""
    from pixelrt import console, faults
    from pixelrt.atomic import sweep_scratch

    argv = sys.argv[1:] if argv is None else list(argv)
    if any("\x00" in str(a) for a in argv):  # no path or value may hold one; the OS would refuse it later
        print("pixelrt: error: an argument contains a NUL byte; no file name or value can hold one", file=sys.stderr)
        return faults.USER
    try:
        args = build_parser().parse_args(argv)  # a bad argument: usage and one message from argparse, exit 2
    except SystemExit as e:  # --help, --version (0) and argument errors (2) return their code
        return e.code if isinstance(e.code, int) else faults.USER
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
