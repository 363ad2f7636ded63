"""Image grids: samples are looked at, not read. Writes a PNG with Pillow, atomically."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from pixelrt.errors import PixelrtError

BACKGROUND = 160  # grey between images and behind row labels
LABEL_INK = 0


def make_grid(images: np.ndarray, levels: int, columns: int | None = None, scale: int | None = None,
              pad: int = 2, row_labels: list[str] | None = None) -> np.ndarray:
    """(N, C, H, W) integer images -> (rows*H', cols*W', C') uint8 grid, rescaled to 0..255.

    Small images are upscaled by pixel repetition so that an 8x8 digit is visible. ``row_labels``: one
    text per grid row, drawn in a left margin (e.g. the class of a label-conditional row).
    """
    if images.ndim != 4 or len(images) == 0:
        raise PixelrtError(f"need a non-empty (N, C, H, W) array of images, got shape {images.shape}")
    n, c, h, w = images.shape
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    scale = scale or max(1, 64 // max(h, w))
    img = (images.astype(np.float32) * (255.0 / (levels - 1))).round().clip(0, 255).astype(np.uint8)
    img = img.repeat(scale, axis=2).repeat(scale, axis=3)
    hs, ws = h * scale, w * scale
    grid = np.full((c, rows * (hs + pad) + pad, cols * (ws + pad) + pad), BACKGROUND, dtype=np.uint8)
    for k in range(n):
        r, q = divmod(k, cols)
        grid[:, pad + r * (hs + pad): pad + r * (hs + pad) + hs, pad + q * (ws + pad): pad + q * (ws + pad) + ws] = img[k]
    grid = grid.transpose(1, 2, 0) if c == 3 else grid[0]  # other channel counts: show the first
    if row_labels is not None:
        if len(row_labels) != rows:
            raise PixelrtError(f"row_labels has {len(row_labels)} entries for a grid of {rows} rows")
        grid = label_rows(grid, [str(t) for t in row_labels], hs, pad)
    return grid


def label_rows(grid: np.ndarray, labels: list[str], row_height: int, pad: int) -> np.ndarray:
    """``grid`` with a left margin holding ``labels[r]`` beside row r, vertically centred; the text is
    about 40% of a row's height (8..16 px: readable beside 8x8 digits shown 8x, never taller than a row
    of unscaled ones)."""
    from PIL import Image, ImageDraw

    from pixelrt.plots import font, text_size

    fnt = font(int(np.clip(round(row_height * 0.4), 8, 16)))
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    sizes = [text_size(probe, t, fnt) for t in labels]
    margin = max(w for w, _ in sizes) + 2 * pad + 4
    canvas = Image.new("RGB" if grid.ndim == 3 else "L", (margin + grid.shape[1], grid.shape[0]),
                       (BACKGROUND,) * 3 if grid.ndim == 3 else BACKGROUND)
    canvas.paste(Image.fromarray(grid), (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for r, (text, (tw, th)) in enumerate(zip(labels, sizes)):
        top = pad + r * (row_height + pad)
        left, ttop, _, _ = draw.textbbox((0, 0), text, font=fnt)
        xy = (margin - pad - 2 - tw - left, top + (row_height - th) // 2 - ttop)
        draw.text(xy, text, fill=(LABEL_INK,) * 3 if grid.ndim == 3 else LABEL_INK, font=fnt)
    return np.asarray(canvas)


def save_grid(images: np.ndarray, levels: int, path: str | os.PathLike, columns: int | None = None,
              row_labels: list[str] | None = None) -> Path:
    """Write ``images`` as one PNG grid (``row_labels``: see :func:`make_grid`), atomically: encoded in
    memory, then a uniquely named temporary sibling, fsync and rename (``pixelrt.atomic``)."""
    import io

    from PIL import Image

    from pixelrt.atomic import atomic_write_bytes

    path = Path(path)
    buf = io.BytesIO()
    Image.fromarray(make_grid(images, levels, columns, row_labels=row_labels)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path
