"""Pictures beside the numbers, drawn with Pillow (torch-free): a checkpoint's training curve and the
receptive-field map of `pixelrt parity --receptive-field --png`.

Each drawing returns a small object holding the image and the geometry it was drawn with (where an
epoch's value, or a map's cell, landed), so tests can check the pixels the data implies.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

WHITE, INK, FRAME, GRID = (255, 255, 255), (0, 0, 0), (90, 90, 90), (228, 228, 228)
TRAIN, HELD_OUT, BEST = (31, 119, 180), (255, 127, 14), (214, 39, 40)

# receptive-field cell codes (parity/receptive_field.py: cell_map) and how each is drawn
CELL_FUTURE, CELL_READ, CELL_BLIND, CELL_PIXEL, CELL_VIOLATION = range(5)
CELLS = {
    CELL_PIXEL: ((214, 39, 40), "output pixel"),
    CELL_READ: ((31, 119, 180), "read"),
    CELL_BLIND: ((255, 191, 0), "blind spot: earlier pixel, never read"),
    CELL_FUTURE: ((238, 238, 238), "later pixel (not read, as it must be)"),
    CELL_VIOLATION: ((150, 0, 150), "later pixel read: causality violation"),
}


def font(size: int):
    """Pillow's default font at ``size`` px (its bitmap font where FreeType is missing)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def text_size(draw, text: str, fnt) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=fnt)
    return right - left, bottom - top


def png_bytes(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def nice_ticks(lo: float, hi: float, count: int = 5, integer: bool = False) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 x 10^k) inside [lo, hi]; ``integer``: steps of at least 1."""
    span = hi - lo if hi > lo else 1.0
    raw = span / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 5, 10)), key=lambda st: abs(math.log(st / raw)))  # nearest round step
    if integer:
        step = max(1.0, round(step))
    first = math.ceil(lo / step - 1e-9) * step
    return [first + k * step for k in range(int((hi - first) / step + 1e-9) + 1)]


def _label(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    return f"{value:.{decimals}f}"


# -- training curve ---------------------------------------------------------------------------------
@dataclass
class CurvePlot:
    image: object            # PIL.Image, RGB
    box: tuple               # plot area (left, top, right, bottom), pixels
    x_range: tuple           # epochs at the left and right edge of the box
    y_range: tuple           # values at the bottom and top edge of the box

    def point(self, epoch: float, value: float) -> tuple[int, int]:
        """The pixel where (epoch, value) is drawn."""
        (left, top, right, bottom), (x0, x1), (y0, y1) = self.box, self.x_range, self.y_range
        return (round(left + (epoch - x0) / (x1 - x0) * (right - left)),
                round(bottom - (value - y0) / (y1 - y0) * (bottom - top)))

    def png(self) -> bytes:
        return png_bytes(self.image)


def _value_range(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)] or [0.0, 1.0]
    lo, hi = min(finite), max(finite)
    pad = (hi - lo) * 0.08 or max(abs(lo) * 0.05, 0.05)
    return lo - pad, hi + pad


def plot_history(history: list[dict], metric: str = "bits/dim", best_epoch: int | None = None,
                 size: tuple[int, int] = (640, 400)) -> CurvePlot:
    """Train and held-out ``metric`` per epoch (``history`` rows: epoch, train_bits_per_dim,
    test_bits_per_dim), with tick labels, a legend and the best epoch ringed. Non-finite values are
    left out (the line breaks there)."""
    from PIL import Image, ImageDraw

    epochs = [int(r["epoch"]) for r in history]
    series = [("train", TRAIN, [float(r["train_bits_per_dim"]) for r in history]),
              ("held-out", HELD_OUT, [float(r["test_bits_per_dim"]) for r in history])]
    W, H = size
    img = Image.new("RGB", size, WHITE)
    draw = ImageDraw.Draw(img)
    small, big = font(12), font(14)
    box = (76, 58, W - 24, H - 48)
    left, top, right, bottom = box
    first, last = (min(epochs), max(epochs)) if epochs else (1, 1)
    x_range = (first, last) if last > first else (first - 0.5, first + 0.5)
    y_range = _value_range(series[0][2] + series[1][2])
    plot = CurvePlot(img, box, x_range, y_range)

    yticks = nice_ticks(*y_range)
    ystep = yticks[1] - yticks[0] if len(yticks) > 1 else 1.0
    for v in yticks:
        _, y = plot.point(x_range[0], v)
        draw.line([(left, y), (right, y)], fill=GRID)
        text = _label(v, ystep)
        tw, th = text_size(draw, text, small)
        draw.text((left - 6 - tw, y - th // 2 - 2), text, fill=INK, font=small)
    for e in nice_ticks(first, last, count=min(8, max(1, last - first)), integer=True):
        x, _ = plot.point(e, y_range[0])
        draw.line([(x, bottom), (x, bottom + 4)], fill=FRAME)
        text = str(int(e))
        tw, _ = text_size(draw, text, small)
        draw.text((x - tw // 2, bottom + 6), text, fill=INK, font=small)
    draw.rectangle(box, outline=FRAME)
    tw, _ = text_size(draw, "epoch", small)
    draw.text(((left + right - tw) // 2, H - 22), "epoch", fill=INK, font=small)
    draw.text((8, top - 18), metric, fill=INK, font=small)  # the y axis' name, above it

    for _, colour, values in series:
        pts = [plot.point(e, v) if math.isfinite(v) else None for e, v in zip(epochs, values)]
        for a, b in zip(pts, pts[1:]):
            if a and b:
                draw.line([a, b], fill=colour, width=2)
        for p in filter(None, pts):
            draw.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=colour)
    best = [r for r in history if r["epoch"] == best_epoch and math.isfinite(r["test_bits_per_dim"])]
    if best:
        x, y = plot.point(best_epoch, best[0]["test_bits_per_dim"])
        draw.ellipse([x - 6, y - 6, x + 6, y + 6], outline=BEST, width=2)
        title = f"held-out {metric}: best {best[0]['test_bits_per_dim']:.4f} at epoch {best_epoch} (the checkpoint)"
    else:
        title = f"held-out {metric}"
    draw.text((left, 8), title, fill=INK, font=big)
    entries = [("train", TRAIN, False), ("held-out", HELD_OUT, False)] + ([(f"best (epoch {best_epoch})", BEST, True)]
                                                                        if best else [])
    x = right - sum(30 + text_size(draw, name, small)[0] + 16 for name, _, _ in entries) + 16  # right-aligned
    for name, colour, ring in entries:
        if ring:
            draw.ellipse([x + 6, 32, x + 18, 44], outline=colour, width=2)
        else:
            draw.line([(x, 38), (x + 24, 38)], fill=colour, width=2)
        draw.text((x + 30, 31), name, fill=INK, font=small)
        x += 30 + text_size(draw, name, small)[0] + 16
    return plot


def training_curve_png(history: list[dict], metric: str = "bits/dim", best_epoch: int | None = None) -> bytes:
    """:func:`plot_history` as PNG bytes (what a checkpoint keeps as training.png)."""
    return plot_history(history, metric, best_epoch).png()


# -- receptive-field maps ---------------------------------------------------------------------------
@dataclass
class CellPlot:
    image: object            # PIL.Image, RGB
    origins: list            # (x, y) of each panel's top-left cell
    cell: int                # cell size, pixels

    def cell_box(self, panel: int, row: int, col: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of a cell's fill, inside its grid lines."""
        x, y = self.origins[panel]
        x, y = x + col * self.cell, y + row * self.cell
        return x + 1, y + 1, x + self.cell - 1, y + self.cell - 1

    def png(self) -> bytes:
        return png_bytes(self.image)


def draw_cell_maps(panels: list[tuple[str, np.ndarray]], cell: int = 26) -> CellPlot:
    """One coloured map per panel, side by side: (title lines joined by newlines, (H, W) int codes of
    :data:`CELLS`), and a legend of the codes that occur."""
    from PIL import Image, ImageDraw

    if not panels:
        raise ValueError("no maps to draw")
    small = font(12)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    title_h = max(len(t.split("\n")) for t, _ in panels) * 16 + 6
    widths = [max(codes.shape[1] * cell, *(text_size(probe, line, small)[0] for line in t.split("\n")))
              for t, codes in panels]
    present = {int(c) for _, codes in panels for c in np.unique(codes)}
    used = [code for code in CELLS if code in present]  # the legend in CELLS' order
    legend_h = 18 * len(used) + 8
    pad = 16
    W = pad + sum(w + pad for w in widths)
    H = pad + title_h + max(codes.shape[0] for _, codes in panels) * cell + pad + legend_h
    img = Image.new("RGB", (max(W, 360), H), WHITE)
    draw = ImageDraw.Draw(img)
    origins, x = [], pad
    for (title, codes), w in zip(panels, widths):
        draw.multiline_text((x, pad), title, fill=INK, font=small, spacing=4)
        y0 = pad + title_h
        origins.append((x, y0))
        for r in range(codes.shape[0]):
            for c in range(codes.shape[1]):
                box = (x + c * cell, y0 + r * cell, x + (c + 1) * cell, y0 + (r + 1) * cell)
                draw.rectangle(box, fill=CELLS[int(codes[r, c])][0], outline=WHITE)
        x += w + pad
    y = H - legend_h
    for code in used:
        colour, name = CELLS[code]
        draw.rectangle((pad, y, pad + 12, y + 12), fill=colour, outline=FRAME)
        draw.text((pad + 20, y - 1), name, fill=INK, font=small)
        y += 18
    return CellPlot(img, origins, cell)
