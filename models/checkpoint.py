"""Checkpoints: a safetensors weight file plus a JSON config, written atomically.

Loading never unpickles anything: the config is JSON, the weights are
safetensors, and the weight file is checked against its sha256.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pixelrt.atomic import atomic_directory, is_checkpoint
from pixelrt.documents import read_json_document
from pixelrt.errors import CheckpointError, PixelrtError
from pixelrt.models.registry import get_model
from pixelrt.bundle.files import contained, sha256_file

FORMAT = "pixelrt-checkpoint"
CONFIG = "checkpoint.json"
WEIGHTS = "weights.safetensors"


def save_checkpoint(model: torch.nn.Module, path: str | Path, meta: dict, overwrite: bool = True,
                    extra_files: dict[str, bytes] | None = None) -> Path:
    """Write CKPT/checkpoint.json + CKPT/weights.safetensors; ``meta`` holds image, data and training info.
    ``extra_files``: plain file name -> bytes written beside them in the same atomic directory (the
    trainer's training.png), so they appear with the weights they describe or not at all."""
    path = Path(path)
    extra = dict(extra_files or {})
    for name in extra:
        if Path(name).name != name or name in (CONFIG, WEIGHTS) or name.startswith("."):
            raise ValueError(f"extra checkpoint file {name!r} must be a plain file name other than {CONFIG}, {WEIGHTS}")
    with atomic_directory(path, overwrite=overwrite, accept=is_checkpoint, what="checkpoint") as tmp:
        tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(tensors, str(tmp / WEIGHTS))
        doc = {"format": FORMAT, "format_version": 1, "family": model.family, "config": asdict(model.config),
               **meta, "weights": {"file": WEIGHTS, "sha256": sha256_file(tmp / WEIGHTS)}}
        (tmp / CONFIG).write_text(json.dumps(doc, indent=2) + "\n")
        for name, data in extra.items():
            (tmp / name).write_bytes(data)
    return path


def read_checkpoint_meta(path: str | Path) -> dict:
    path = Path(path)
    cfg = path / CONFIG
    if not path.is_dir() or not cfg.is_file():
        raise CheckpointError(
            f"{path} is not a pixelrt checkpoint (expected a folder with {CONFIG} and {WEIGHTS}); "
            "create one with `pixelrt train -o CKPT/`"
        )
    return read_json_document(cfg, FORMAT, "checkpoint config", CheckpointError, "re-run `pixelrt train`")


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model from its config and load verified weights; returns (model in eval mode, meta)."""
    path = Path(path)
    doc = read_checkpoint_meta(path)
    try:
        entry = get_model(doc["family"])
        model = entry.build(entry.make_config(**doc["config"]))
        name = doc["weights"]["file"]
        expected = doc["weights"]["sha256"]
        if not isinstance(name, str) or not isinstance(expected, str):
            raise TypeError("weights.file and weights.sha256 must be strings")
    except (KeyError, TypeError, ValueError, PixelrtError) as e:
        raise CheckpointError(f"{path / CONFIG} has a missing or malformed entry ({e}); re-run `pixelrt train`") from None
    # the weights must be a regular file inside the checkpoint folder: never '../', an absolute path or a symlink out
    weights = contained(path, name, CheckpointError, "the checkpoint is incomplete or was tampered with; re-run "
                        "`pixelrt train`", what="checkpoint",
                        missing=f"{path / name} is missing; the checkpoint is incomplete, re-run `pixelrt train`")
    if sha256_file(weights) != expected:
        raise CheckpointError(f"{path / name}: sha256 does not match {CONFIG}; the file was changed or truncated")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights} is not a readable safetensors file ({e}); re-run `pixelrt train`") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:300]
        raise CheckpointError(f"{weights} does not fit the model in {CONFIG} ({detail}); use the {CONFIG} "
                              "saved with these weights or re-run `pixelrt train`") from None
    return model.eval(), doc
