"""``pixelrt.export_model``: the Python entry point for exporting any model, yours included.

    import pixelrt
    result = pixelrt.export_model(model, image=(1, 8, 8, 17), out="bundles/mine", data="digits")
    print(result.report.table())          # every check, measured against its budget
    samples = pixelrt.sample(result.bundle, 16, seed=0)

The model either implements the step protocol (models/contract.py, docs/export-your-model.md) or is
composed of pixelrt's layers (``pixelrt.models.causal.CausalSequential``); a module that does neither
is refused with the names of the missing methods. Validation is the CLI's: ORT against PyTorch at an
untraced batch, the teacher-forced step loop against the full graph, sampled log-probs against the
full log-likelihood, and a causality probe; a miss is a ParityError and nothing is written.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pixelrt.bundle import ImageSpec
from pixelrt.errors import PixelrtError
from pixelrt.export.exporter import ExportResult, export_bundle
from pixelrt.models.contract import check_protocol

REFERENCE_IMAGES = 8


def export_model(model: torch.nn.Module, image, out: str | Path, data=None, *, reference: int = REFERENCE_IMAGES,
                 context: dict | None = None, overwrite: bool = False, seed: int = 0, source: dict | None = None,
                 adapter=None, log=print, wavefront: bool = True) -> ExportResult:
    """Export ``model`` to the bundle folder ``out`` and validate it; returns ``ExportResult(bundle, report)``.

    image: an ImageSpec or (channels, height, width, levels).
    data: the reference images: a uint8 array (N, C, H, W), or a data spec `pixelrt.data.load_dataset`
      reads (``"digits"``, an .npz, an MNIST/CIFAR-10 file, an image folder); then ``reference`` images
      are drawn, seeded, from its held-out split. Without data, random images of the right shape are used
      (fine for a smoke test; real images make the stored reference meaningful).
    context: the reference images' conditioning inputs for a conditional model (e.g. {"label": (N,)}).
    adapter: for a plain PyTorch module (no step protocol): a ``pixelrt.Adapter`` (or its JSON dict) saying how
      pixels become its input and how its output reads as logits; the step path is then derived from the
      module itself (``pixelrt.models.derive``, docs/convert.md) and audited before export.
    """
    image = _image(image)
    if adapter is not None:
        model = _derived(model, adapter, image)
        source = source or {"api": "pixelrt.export_model", "derived_from": model.source}
    check_protocol(model)
    x = _reference_images(data, image, reference, seed)
    return export_bundle(model, image, x, out, wavefront=wavefront, source=source or {"api": "pixelrt.export_model"},
                         overwrite=overwrite, log=log, context=context)


def _derived(module: torch.nn.Module, adapter, image: ImageSpec):
    """``module`` with its step protocol derived for ``image`` (models/derive); the adapter must match it."""
    from pixelrt.models.derive import Adapter, derive

    adapter = adapter if isinstance(adapter, Adapter) else Adapter.from_json(dict(adapter))
    if (adapter.channels, adapter.levels) != (image.channels, image.levels):
        raise PixelrtError(f"the adapter is for {adapter.channels} channels and {adapter.levels} levels but image is "
                           f"{image.channels} channels with {image.levels} levels; make them agree")
    return derive(module, adapter, image.height, image.width)


def _image(image) -> ImageSpec:
    """An ImageSpec within the bundle format's bounds (the loader's own parser checks it)."""
    from pixelrt.bundle.fields import Field

    if isinstance(image, ImageSpec):
        image = (image.channels, image.height, image.width, image.levels)
    try:
        C, H, W, levels = image
    except (TypeError, ValueError):
        raise PixelrtError(f"image must be an ImageSpec or (channels, height, width, levels), got {image!r}") from None
    doc = {"channels": C, "height": H, "width": W, "levels": levels}
    return ImageSpec.parse(Field(doc, "image", "export_model's argument", PixelrtError,
                                 "pass image=(channels, height, width, levels) within those ranges"))


def _reference_images(data, image: ImageSpec, n: int, seed: int) -> np.ndarray:
    from pixelrt.bundle.records import MAX_REFERENCE

    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_REFERENCE:
        raise PixelrtError(f"reference must be an integer number of images in 1..{MAX_REFERENCE}, got {n!r}")
    rng = np.random.default_rng(seed)
    if data is None:
        return rng.integers(0, image.levels, (n, *image.shape)).astype(np.uint8)
    if isinstance(data, np.ndarray):
        return data
    from pixelrt.data import load_dataset, split

    ds = load_dataset(str(data), levels=image.levels)
    _, held_out = split(ds)
    idx = np.sort(rng.choice(len(held_out), size=min(n, len(held_out)), replace=False))
    return held_out.x[idx]
