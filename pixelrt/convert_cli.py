"""`pixelrt convert` and `pixelrt import-pclucas`: models written elsewhere, into bundles and checkpoints
(docs/convert.md). Registered by pixelrt.cli; both need the export extra (torch).

    pixelrt convert my_model.py:PixelCNN --weights model.pth --adapter adapter.json --image 1x28x28 \\
        --data mnist.idx -o bundles/mine
    pixelrt import-pclucas pcnn_lr.0.00040_nr-resnet5_nr-filters160_889.pth -o runs/pp --image 3x32x32
    pixelrt export runs/pp -o bundles/pp --data cifar-10-batches-bin/test_batch.bin

``convert`` imports the named Python file (your model's own code, like any training script would) and
builds the class with ``--init`` keyword arguments; the weights are a state_dict read with
``torch.load(..., weights_only=True)`` or safetensors, never unpickled.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from pixelrt.errors import PixelrtError


def add_commands(sub) -> None:
    p = sub.add_parser("convert", help="export a plain PyTorch PixelCNN: step graphs derived from the module itself",
                       description="Traces the module (torch.fx), probes each convolution's effective kernel (masks "
                                   "and shifts alike), derives the cached step graph (and a per-row graph for "
                                   "vertical stacks), audits it against the full graph node by node, then exports "
                                   "and validates the bundle like every other (docs/convert.md). An op it cannot "
                                   "derive is refused by name.")
    p.add_argument("module", help="FILE.py:CLASS, the model's own definition")
    p.add_argument("--weights", default=None, help="state_dict (.pth/.pt via torch.load weights_only, or .safetensors)")
    p.add_argument("--init", default="{}", help="JSON keyword arguments of CLASS(...) (default: none)")
    p.add_argument("--adapter", required=True,
                   help="JSON file or inline JSON: {channels, levels, input, output, context} (docs/convert.md)")
    p.add_argument("--image", required=True, help="CxHxW the model is exported for, e.g. 1x28x28")
    p.add_argument("--data", default=None, help="reference images (a data spec as for train); default: random")
    p.add_argument("-o", "--out", required=True, help="bundle folder to write")
    p.add_argument("--force", action="store_true", help="replace an existing bundle folder")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("import-pclucas", help="PixelCNN++ weights of github.com/pclucas14/pixel-cnn-pp as a checkpoint",
                       description="Reads the state_dict that implementation saves (tensors only: torch.load with "
                                   "weights_only=True), checks every key and shape, folds its weight normalisation "
                                   "and writes a pixelrt PixelCNN++ checkpoint; export it with `pixelrt export`.")
    p.add_argument("weights", help="the .pth its main.py saved (or .safetensors)")
    p.add_argument("-o", "--out", required=True, help="checkpoint folder to write")
    p.add_argument("--image", default="3x32x32", help="CxHxW (H, W divisible by 4) (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace an existing checkpoint folder")
    p.set_defaults(func=cmd_import_pclucas)


def parse_image(text: str) -> tuple[int, int, int]:
    try:
        C, H, W = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise PixelrtError(f"--image takes CxHxW, e.g. 1x28x28; got {text!r}") from None
    if min(C, H, W) < 1 or C > 4 or max(H, W) > 4096:
        raise PixelrtError(f"--image {text!r}: use 1..4 channels and sides of 1..4096 pixels")
    return C, H, W


def load_module_class(spec: str):
    path, _, name = spec.rpartition(":")
    if not path or not name:
        raise PixelrtError(f"module must be FILE.py:CLASS, got {spec!r}")
    file = Path(path)
    if not file.is_file():
        raise PixelrtError(f"{file} is not a file; pass the Python file that defines {name}")
    mod_spec = importlib.util.spec_from_file_location(f"pixelrt_user_{file.stem}", file)
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[mod_spec.name] = module
    mod_spec.loader.exec_module(module)
    cls = getattr(module, name, None)
    if cls is None:
        raise PixelrtError(f"{file} defines no {name}")
    return cls


def _json_arg(text: str, what: str) -> dict:
    source = Path(text).read_text() if Path(text).is_file() else text
    try:
        doc = json.loads(source)
    except json.JSONDecodeError as e:
        raise PixelrtError(f"{what} is neither a JSON file nor inline JSON ({e})") from None
    if not isinstance(doc, dict):
        raise PixelrtError(f"{what} must be a JSON object")
    return doc


def cmd_convert(args) -> int:
    import pixelrt
    from pixelrt.models.derive import Adapter
    from pixelrt.models.derive.user import build_user_module

    adapter = Adapter.from_json(_json_arg(args.adapter, "--adapter"))
    C, H, W = parse_image(args.image)
    cls = load_module_class(args.module)
    module = build_user_module(cls, _json_arg(args.init, "--init"), args.weights)
    result = pixelrt.export_model(module, image=(C, H, W, adapter.levels), out=args.out, data=args.data,
                                  adapter=adapter, overwrite=args.force,
                                  source={"converted": args.module, "weights": args.weights})
    print(result.report.table())
    print(f"bundle written to {args.out}: step graph derived from {cls.__name__}")
    return 0


def cmd_import_pclucas(args) -> int:
    from pixelrt.models.checkpoint import save_checkpoint
    from pixelrt.models.pclucas import SOURCE, import_pclucas

    C, H, W = parse_image(args.image)
    model = import_pclucas(args.weights)
    if C != model.config.channels:
        raise PixelrtError(f"the weights are for {model.config.channels}-channel images, not {C}; fix --image")
    try:
        model.config.check_image(H, W)
    except ValueError as e:
        raise PixelrtError(str(e)) from None
    meta = {"image": {"channels": C, "height": H, "width": W, "levels": 256},
            "imported": {"from": SOURCE, "weights": str(args.weights)}}
    save_checkpoint(model, args.out, meta, overwrite=args.force)
    cfg = model.config
    print(f"imported {SOURCE} PixelCNN++ (nr_resnet={cfg.resnets}, nr_filters={cfg.filters}, "
          f"nr_logistic_mix={cfg.mixtures}, {C} channels) into {args.out}; export it with "
          f"`pixelrt export {args.out} -o BUNDLE --data ...`")
    return 0
