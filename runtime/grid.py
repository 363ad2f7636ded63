"""Image grids: samples are looked at, not read. Writes a PNG with Pillow."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from pixelrt.errors import PixelrtError


def make_grid(images: np.ndarray, levels: int, columns: int | None = None, scale: int | None = None,
              pad: int = 2) -> np.ndarray:
    """(N, C, H, W) integer images -> (rows*H', cols*W', C') uint8 grid, rescaled to 0..255.

    Small images are upscaled by pixel repetition so that an 8x8 digit is visible.
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
    grid = np.full((c, rows * (hs + pad) + pad, cols * (ws + pad) + pad), 160, dtype=np.uint8)
    for k in range(n):
        r, q = divmod(k, cols)
        grid[:, pad + r * (hs + pad): pad + r * (hs + pad) + hs, pad + q * (ws + pad): pad + q * (ws + pad) + ws] = img[k]
    return grid.transpose(1, 2, 0) if c == 3 else grid[0]  # other channel counts: show the first


def save_grid(images: np.ndarray, levels: int, path: str | os.PathLike, columns: int | None = None) -> Path:
    """Write ``images`` as one PNG grid, atomically (temp file, then rename)."""
    from PIL import Image

    path = Path(path)
    grid = make_grid(images, levels, columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(grid).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
