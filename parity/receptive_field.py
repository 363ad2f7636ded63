"""`pixelrt parity --receptive-field`: the causal receptive field measured by autograd, not assumed.

The Jacobian audit of :mod:`pixelrt.models.causality` gives, for every output
sub-pixel, the input sub-pixels it reads. Coverage is the fraction of the
causal past actually reached: a plain PixelCNN shows its blind spot (< 1); a
model that sees all earlier pixels reaches 1.0. The map drawn for one output
pixel is what people look at: ``X`` the pixel, ``#`` read, ``.`` in the causal
past but never read (the blind spot), blank: the future. ``--png PATH`` draws the same
maps in colour (:func:`save_field_maps`), later pixels that are read (a violation) included.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pixelrt.errors import PixelrtError
from pixelrt.models.causality import CausalityReport, audit_model
from pixelrt.plots import CELL_BLIND, CELL_FUTURE, CELL_PIXEL, CELL_READ, CELL_VIOLATION


@dataclass
class FieldReport:
    name: str
    shape: tuple          # (C, h, w) audited
    audit: CausalityReport

    def as_dict(self) -> dict:
        return {"model": self.name, "shape": list(self.shape), **self.audit.as_dict()}


def cell_map(deps: np.ndarray, i: int, j: int) -> np.ndarray:
    """(H, W) codes of ``pixelrt.plots.CELLS`` for output pixel (i, j) (any channel group to any):
    the pixel itself, earlier pixels read or never read (the blind spot), later pixels read (a
    causality violation) or not."""
    _, H, W, _, _, _ = deps.shape
    reads = deps[:, i, j].any(axis=(0, 1))  # (H, W)
    later = (np.arange(H)[:, None] * W + np.arange(W)[None, :]) > i * W + j
    codes = np.where(later, np.where(reads, CELL_VIOLATION, CELL_FUTURE), np.where(reads, CELL_READ, CELL_BLIND))
    codes[i, j] = CELL_PIXEL
    return codes


TEXT_CELLS = {CELL_PIXEL: "X", CELL_READ: "#", CELL_BLIND: ".", CELL_FUTURE: " ", CELL_VIOLATION: " "}


def pixel_map(deps: np.ndarray, i: int, j: int) -> str:
    """ASCII map of the input pixels output pixel (i, j) reads (any channel group to any)."""
    return "\n".join(" ".join(TEXT_CELLS[int(c)] for c in row).rstrip() for row in cell_map(deps, i, j))


def most_blind(deps: np.ndarray) -> tuple[int, int]:
    """The output pixel with the most unread pixels in its causal past (the latest one on a tie)."""
    _, H, W, _, _, _ = deps.shape
    reads = deps.any(axis=(0, 3))  # (H, W, H, W)
    past = np.arange(H * W)[None, :] < np.arange(H * W)[:, None]
    blind = (past & ~reads.reshape(H * W, H * W)).sum(1)
    k = H * W - 1 - int(np.argmax(blind[::-1]))
    return divmod(k, W)


def measure(model: torch.nn.Module, name: str, shape: tuple, seed: int = 0) -> FieldReport:
    return FieldReport(name, tuple(shape), audit_model(model, tuple(shape), seed=seed))


def plain_pixelcnn(channels: int, levels: int, seed: int = 0) -> torch.nn.Module:
    """The foundation's PixelCNN with default layers (random weights: the field is structural)."""
    from pixelrt.models.registry import get_model

    torch.manual_seed(seed)
    entry = get_model("pixelcnn")
    return entry.build(entry.make_config(channels=channels, levels=levels))


def format_fields(reports: list[FieldReport]) -> str:
    lines = ["receptive field (autograd Jacobian of every output sub-pixel w.r.t. the input)",
             f"{'model':<28} {'audited':>9} {'violations':>10} {'coverage of the causal past':>28}"]
    for r in reports:
        lines.append(f"{r.name:<28} {'x'.join(map(str, r.shape)):>9} {r.audit.violations:>10} {r.audit.coverage:>28.3f}")
    for r in reports:
        i, j = most_blind(r.audit.dependencies)
        lines.append(f"\n{r.name}: inputs read by output pixel ({i}, {j})  [X pixel, # read, . blind spot]")
        lines.append(pixel_map(r.audit.dependencies, i, j))
    return "\n".join(lines)


def field_panels(reports: list[FieldReport]) -> list[tuple[str, np.ndarray]]:
    """(title, cell codes) per report for the output pixel :func:`format_fields` prints."""
    panels = []
    for r in reports:
        i, j = most_blind(r.audit.dependencies)
        panels.append((f"{r.name}\noutput pixel ({i}, {j}); coverage {r.audit.coverage:.3f}",
                       cell_map(r.audit.dependencies, i, j)))
    return panels


def save_field_maps(reports: list[FieldReport], path) -> Path:
    """Write the maps :func:`format_fields` prints as one PNG (one coloured panel per report, the same
    output pixel, a legend), atomically: `pixelrt parity --receptive-field --png PATH`."""
    from pixelrt.atomic import atomic_write_bytes
    from pixelrt.plots import draw_cell_maps

    path = Path(path)
    atomic_write_bytes(path, draw_cell_maps(field_panels(reports)).png())
    return path


# -- what `pixelrt parity --receptive-field` measures, per kind (parity/table.py: FIELDS) ------------------
def _image(meta: dict) -> dict:
    img = {"height": 8, "width": 8, **meta.get("config", {}), **(meta.get("image") or {})}
    img.setdefault("channels", 1)
    img.setdefault("levels", 256)
    return img


def model_fields(model: torch.nn.Module, meta: dict, size: tuple[int, int] | None, seed: int = 0) -> list[FieldReport]:
    """The checkpoint on an ``size`` (h, w) image (default: its own size, at most 8x8), beside a default
    PixelCNN's field (left out when the checkpoint is that very architecture)."""
    img = _image(meta)
    h, w = size or (min(8, img["height"]), min(8, img["width"]))
    shape = (img["channels"], h, w)
    reports = [measure(model, f"{meta['family']} (this checkpoint)", shape, seed=seed)]
    reference = plain_pixelcnn(img["channels"], img["levels"])
    if not hasattr(model, "describe") or model.describe() != reference.describe():
        reports.append(measure(reference, "pixelcnn (default, reference)", shape))
    return reports


def _own_size(size, what: str) -> None:
    if size is not None:
        raise PixelrtError(f"--receptive-field for {what} uses the checkpoint's size (pass it bare)")


def stage_fields(model, meta: dict, size: tuple[int, int] | None, seed: int = 0) -> list[FieldReport]:
    """A multi-scale model per stage: stage 1 on the coarse image, stage 2 with a coarse image held fixed
    (the whole model's bound reads the coarsened image, which no single raster order makes causal)."""
    from pixelrt.models.multiscale import GivenCoarse

    _own_size(size, "a multi-scale model")
    image = meta["image"]
    C, H, W = image["channels"], image["height"], image["width"]
    coarse = torch.randint(0, image["levels"], (1, C, H // 2, W // 2), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(seed))
    return [measure(model.stage1, "stage 1 (coarse image)", (C, H // 2, W // 2), seed=seed),
            measure(GivenCoarse(model, coarse), "stage 2 (coarse image fixed)", (C, H, W), seed=seed)]


def decoder_fields(model, meta: dict, size: tuple[int, int] | None, seed: int = 0) -> list[FieldReport]:
    """A PixelVAE's p(x|z): its conditioned PixelCNN given one example features map (a map is no pixel)."""
    _own_size(size, "a PixelVAE (its features map has the image's size)")
    image = meta["image"]
    shape = (image["channels"], image["height"], image["width"])
    return [measure(model.pixelcnn, "pixelvae p(x|z) (this checkpoint)", shape, seed=seed)]
