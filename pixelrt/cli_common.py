"""Helpers shared by the CLI's command modules: data/runtime arguments, the recorded data split,
config overrides and conditioning inputs. Torch-free."""
from __future__ import annotations

import argparse
import json

from pixelrt.argtypes import float_range, int_range, seed
from pixelrt.errors import PixelrtError

# the registered model families, named here so that `--help` lists them without importing torch
# (tests/test_cli_help.py checks this list against the registry)
MODEL_NAMES = ("pixelcnn", "gated", "pixelcnnpp", "rowlstm", "diagbilstm", "multiscale", "vae", "pixelvae", "resgated")


def _add_data_args(p: argparse.ArgumentParser, default: str | None = "digits") -> None:
    from pixelrt.data import SPEC_HELP

    p.add_argument("--data", default=default,
                   help=f"data set: {SPEC_HELP} (default: {default or 'the one recorded at training time'})")
    p.add_argument("--levels", type=int_range(2, 256), default=None, help="levels per sub-pixel if the data does not say (2..256)")
    p.add_argument("--test-fraction", type=float_range(0.0, 0.95, low_open=True), default=None,
                   help="held-out share of the data (default: as recorded at training time, else 0.2)")
    p.add_argument("--split-seed", type=seed, default=None,
                   help="seed of the deterministic train/test split (default: as recorded, else 0)")


def _add_runtime_arg(p: argparse.ArgumentParser) -> None:
    from pixelrt.runtime.backends import RUNTIMES

    p.add_argument("--runtime", default="ort", choices=list(RUNTIMES),
                   help="; ".join(f"{k}: {v}" for k, v in RUNTIMES.items()) + " (default: %(default)s)")
    _add_trt_options(p)


def _add_trt_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trt-profile", default=None, metavar="NAME",
                   help="--runtime trt: engine build profile (server, jetson-orin-nano, jetson-agx-orin; default: "
                        "$PIXELRT_TRT_PROFILE or server; see `pixelrt build-engine --help`)")
    p.add_argument("--no-tf32", action="store_true",
                   help="--runtime trt: build FP32 layers without TF32 (for parity runs; same as PIXELRT_TRT_TF32=0)")


def apply_runtime_options(args) -> None:
    """--trt-profile / --no-tf32 into the environment the TensorRT backend reads (runtime/backends.py), so one
    setting reaches every engine a command builds; checked here so a typo fails before any work."""
    import os

    profile = getattr(args, "trt_profile", None)
    if profile is not None:
        from pixelrt.runtime.trt_profiles import get_profile

        get_profile(profile)
        os.environ["PIXELRT_TRT_PROFILE"] = profile
    if getattr(args, "no_tf32", False):
        os.environ["PIXELRT_TRT_TF32"] = "0"


def _split_data(args, recorded: dict | str | None = None):
    """Load --data (or the recorded data set) and split it as it was split at training time.

    ``recorded`` is the data record of a checkpoint or bundle; explicit flags win over it.
    Returns (dataset, train, test, record) where record says what was used.
    """
    from pixelrt.data import load_dataset, split

    recorded = {"spec": recorded} if isinstance(recorded, str) else dict(recorded or {})

    def pick(flag: str, key: str, default):
        value = getattr(args, flag, None)
        return value if value is not None else recorded.get(key) if recorded.get(key) is not None else default

    spec = pick("data", "spec", None)
    if not spec and recorded.get("recorded_path"):
        raise PixelrtError(f"the bundle records its data set as {recorded['recorded_path']!r}; pixelrt does not open "
                           "paths a bundle names: pass it yourself with --data (the recorded split is still used)")
    if not spec:
        raise PixelrtError("no data set given and none recorded with the model; pass --data")
    record = {"spec": spec, "levels": pick("levels", "levels", None),
              "test_fraction": pick("test_fraction", "test_fraction", 0.2), "split_seed": pick("split_seed", "split_seed", 0)}
    ds = load_dataset(spec, levels=record["levels"])
    train, test = split(ds, record["test_fraction"], record["split_seed"])
    return ds, train, test, record


def _parse_overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise PixelrtError(f"--set {pair!r} is not KEY=VALUE, e.g. --set hidden=64")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _condition_overrides(args, entry, ds) -> dict:
    """--condition label -> num_classes from the data set's labels (checked against the model's config)."""
    if getattr(args, "condition", "none") == "none":
        return {}
    from dataclasses import fields

    if "num_classes" not in {f.name for f in fields(entry.config_cls)}:
        raise PixelrtError(f"model {entry.name!r} cannot be label-conditioned; use --model gated")
    if ds.labels is None:
        raise PixelrtError(f"{ds.name} has no labels; --condition label needs labelled data (digits, an .npz with "
                           "'y' or 'labels', MNIST with its labels file, CIFAR-10, class subfolders)")
    return {"num_classes": int(ds.labels.max()) + 1}


def _model_context(model, ds, n: int) -> dict:
    """{"context": ...} with the conditioning of ds's first n images, for a conditional model; else {}."""
    names = [c.name for c in getattr(model, "conditioning", ()) or ()]  # the step protocol's context records
    if not names:
        return {}
    from pixelrt.runtime.conditioning import data_context

    return {"context": {k: v[:n] for k, v in data_context(names, ds).items()}}


def check_pair(checkpoint, meta: dict, bundle) -> None:
    """Refuse a bundle that was not exported from this checkpoint (family, config, image, weights) before
    comparing them: a mismatch is a user error (exit 2), not a parity miss (exit 1)."""
    problems = []
    if bundle.family != meta.get("family"):
        problems.append(f"family {bundle.family!r} vs {meta.get('family')!r}")
    elif dict(bundle.manifest.config) != dict(meta.get("config") or {}):
        diff = sorted(k for k in set(bundle.manifest.config) | set(meta.get("config") or {})
                      if bundle.manifest.config.get(k) != (meta.get("config") or {}).get(k))
        problems.append(f"config differs in {', '.join(diff)}")
    image = meta.get("image") or {}
    if bundle.image.to_json() != {k: image.get(k) for k in bundle.image.to_json()}:
        problems.append(f"image {bundle.image.to_json()} vs {image}")
    source = bundle.manifest.source if isinstance(bundle.manifest.source, dict) else {}
    want = (meta.get("weights") or {}).get("sha256")
    if not problems and source.get("weights_sha256") not in (None, want):
        problems.append("exported from other weights (the weights' sha256 differs)")
    if problems:
        raise PixelrtError(f"--bundle {bundle.root} was not exported from {checkpoint}: {'; '.join(problems)}; pass the "
                           f"bundle exported from this checkpoint (`pixelrt export {checkpoint} -o BUNDLE`)")
