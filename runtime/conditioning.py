"""Conditioning inputs of a bundle (manifest ``conditioning``), checked before they reach a graph.

A class label indexes an embedding inside the graphs: an out-of-range label would
surface as a runtime's Gather error, or silently read another row on some
runtimes, so it is refused here with the valid range. A conditioning map must
have the manifest's per-image shape and finite values. Torch-free.
"""
from __future__ import annotations

import re

import numpy as np

from pixelrt.data import data_context
from pixelrt.errors import PixelrtError


def records(bundle) -> dict:
    """name -> ConditioningSpec of each conditioning input."""
    return {r.name: r for r in bundle.manifest.conditioning}


def check_context(context: dict | None, names: tuple, n: int) -> dict[str, np.ndarray]:
    """Per-image inputs (first axis N) for every name the schedule lists, and nothing else."""
    context = dict(context or {})
    missing = [k for k in names if k not in context]
    unknown = [k for k in context if k not in names]
    if missing:
        raise PixelrtError(f"this bundle is conditional: it needs {', '.join(missing)} for every image "
                           f"(e.g. `--label` for a class label)")
    if unknown:
        raise PixelrtError(f"this bundle takes no {', '.join(unknown)}"
                           + (f" (its conditioning inputs: {', '.join(names)})" if names else " (it is unconditional)"))
    for k, v in context.items():
        if not isinstance(v, np.ndarray) or len(v) != n:
            raise PixelrtError(f"conditioning input {k!r} must be an array with one entry per image ({n}), "
                               f"got {getattr(v, 'shape', type(v).__name__)}")
    return context


def check_conditioning(bundle, context: dict | None, n: int) -> dict[str, np.ndarray]:
    """Presence (the schedule's names), then per-record dtype, shape and range; returns feedable arrays."""
    context = check_context(context, bundle.context, n)
    out = {}
    for name, value in context.items():
        rec = records(bundle).get(name)
        value = np.asarray(value)
        if rec is None:
            out[name] = value
            continue
        want = (n, *rec.shape)
        if value.shape != want:
            raise PixelrtError(f"conditioning input {name!r} has shape {value.shape}, expected {want}")
        if rec.kind == "class":
            if not np.issubdtype(value.dtype, np.integer):
                raise PixelrtError(f"labels must be integers, got {value.dtype}")
            classes = rec.classes
            if value.size and (value.min() < 0 or value.max() >= classes):
                raise PixelrtError(f"labels must lie in 0..{classes - 1} (the model has {classes} classes), "
                                   f"got {value.min()}..{value.max()}")
        elif np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise PixelrtError(f"conditioning input {name!r} contains NaN or infinity")
        out[name] = np.ascontiguousarray(value, dtype=rec.dtype)
    return out


MAX_LABEL = 1_000_000  # far above any class count; keeps int64 and the block list small


def parse_labels(text: str, n: int) -> np.ndarray:
    """`--label` text -> (n,) int64: one label ("3") for every image, or a list ("0,1,2" or "0-9") split
    into equal consecutive blocks (n must be a multiple of its length), one block per label."""
    labels = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)-(\d+)", part)
        too_big = [v for v in re.findall(r"\d+", part) if int(v) > MAX_LABEL]
        if too_big:
            raise PixelrtError(f"--label {too_big[0]} is not a class index (at most {MAX_LABEL}); `pixelrt info "
                               "BUNDLE` shows the bundle's classes")
        if m and int(m.group(1)) <= int(m.group(2)):
            labels.extend(range(int(m.group(1)), int(m.group(2)) + 1))
        elif re.fullmatch(r"\d+", part):
            labels.append(int(part))
        else:
            raise PixelrtError(f"--label {text!r}: expected a class index, a list like 0,3,7 or a range like 0-9")
    if n % len(labels):
        raise PixelrtError(f"--label gives {len(labels)} labels but -n is {n}; -n must be a multiple of "
                           f"{len(labels)} (each label gets n / {len(labels)} images)")
    return np.repeat(np.asarray(labels, dtype=np.int64), n // len(labels))


def sample_context(bundle, n: int) -> dict[str, np.ndarray]:
    """Context for ``n`` parity samples: labels cycling through the classes; maps cannot be made up."""
    out = {}
    for name in bundle.context:
        rec = records(bundle).get(name)
        if rec is None or rec.kind != "class":
            raise PixelrtError(f"the bundle takes a {name!r} input pixelrt cannot invent for sampling; "
                               "use the Python API and pass it as context")
        out[name] = np.arange(n, dtype=np.int64) % rec.classes
    return out


__all__ = ["check_conditioning", "check_context", "data_context", "parse_labels", "records", "sample_context"]
