"""The pictures (pixelrt/plots.py): a checkpoint's training curve, drawn where its numbers put it and kept
beside every checkpoint, and the receptive-field map, cell for cell the measured dependency array."""
import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from pixelrt.plots import (BEST, CELL_BLIND, CELL_FUTURE, CELL_PIXEL, CELL_READ, CELL_VIOLATION, CELLS, HELD_OUT,
                           TRAIN, draw_cell_maps, nice_ticks, plot_history, training_curve_png)

# train falls 2.8 -> 1.4; held-out 2.25 -> 2.10 (epoch 4, the best), then overfits up to 2.82
HISTORY = [{"epoch": e, "train_bits_per_dim": 3.0 - 0.2 * e,
            "test_bits_per_dim": 2.3 - 0.05 * e + 0.08 * max(0, e - 4) ** 2, "seconds": float(e)} for e in range(1, 9)]


def _rgb(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def _near(a: np.ndarray, xy, colour, r: int = 1) -> bool:
    x, y = xy
    return bool((a[y - r:y + r + 1, x - r:x + r + 1] == colour).all(-1).any())


def test_curves_are_drawn_where_the_history_puts_them():
    plot = plot_history(HISTORY, "bits/dim", best_epoch=4)
    a = _rgb(plot.image)
    assert plot.image.size == (640, 400)
    left, top, right, bottom = plot.box
    assert plot.point(1, 0)[0] == left and plot.point(8, 0)[0] == right  # epochs span the box
    for row in HISTORY:
        assert tuple(a[plot.point(row["epoch"], row["train_bits_per_dim"])[::-1]]) == TRAIN
        assert tuple(a[plot.point(row["epoch"], row["test_bits_per_dim"])[::-1]]) == HELD_OUT
    for r0, r1 in zip(HISTORY, HISTORY[1:]):  # the line between two epochs runs through their midpoint
        mid = [(p + q) // 2 for p, q in zip(plot.point(r0["epoch"], r0["test_bits_per_dim"]),
                                          plot.point(r1["epoch"], r1["test_bits_per_dim"]))]
        assert _near(a, mid, HELD_OUT)
    x, y = plot.point(4, HISTORY[3]["test_bits_per_dim"])
    assert _near(a, (x + 6, y), BEST) and _near(a, (x, y - 6), BEST)  # the best epoch's ring
    assert (a[top + 2:bottom - 2, left + 2:right - 2] == BEST).all(-1).sum() < 200  # one ring, not a red plot


def test_ticks_legend_and_axis_labels_are_drawn():
    plot = plot_history(HISTORY, "bits/dim", best_epoch=4)
    a = _rgb(plot.image)
    left, top, right, bottom = plot.box
    dark = (a < 60).all(-1)
    for v in nice_ticks(*plot.y_range):  # a label left of each y tick
        y = plot.point(1, v)[1]
        assert dark[y - 7:y + 7, :left - 4].any(), v
    for e in (2, 4, 6, 8):  # and under each x tick
        x = plot.point(e, 0)[0]
        assert dark[bottom + 4:bottom + 22, x - 6:x + 7].any(), e
    legend = a[:top]
    assert (legend == TRAIN).all(-1).any() and (legend == HELD_OUT).all(-1).any() and (legend == BEST).all(-1).any()


def test_non_finite_values_break_the_line_and_one_epoch_still_draws():
    history = [dict(r) for r in HISTORY]
    history[3]["test_bits_per_dim"] = math.nan
    plot = plot_history(history, "bits/dim", best_epoch=3)
    assert all(math.isfinite(v) for v in plot.y_range)
    one = plot_history(HISTORY[:1], "bits/dim (negative ELBO)", best_epoch=1)
    a = _rgb(one.image)
    assert tuple(a[one.point(1, HISTORY[0]["train_bits_per_dim"])[::-1]]) == TRAIN
    assert Image.open(io.BytesIO(training_curve_png(HISTORY[:1], "bits/dim", 1))).size == (640, 400)


def test_nice_ticks_are_round_and_inside_the_range():
    assert nice_ticks(1.62, 2.71) == pytest.approx([1.8, 2.0, 2.2, 2.4, 2.6])
    assert nice_ticks(1, 30, count=8, integer=True) == [5, 10, 15, 20, 25, 30]
    assert nice_ticks(1, 1, integer=True) == [1]


# -- the trainer keeps the curve with every checkpoint ---------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny PixelCNN trained 3 epochs whose held-out numbers are scripted: 3.0, 2.0, 2.5 (best: epoch 2)."""
    import pixelrt.models.train as train_mod
    from pixelrt.data import Dataset
    from pixelrt.models import PixelCNN, PixelCNNConfig

    x = np.random.default_rng(0).integers(0, 4, (24, 1, 4, 4)).astype(np.uint8)
    tr, te = Dataset(x[:16], 4, "tiny"), Dataset(x[16:], 4, "tiny")
    torch.manual_seed(0)
    model = PixelCNN(PixelCNNConfig(channels=1, levels=4, hidden=4, blocks=1, head_hidden=4, input_kernel=3))
    scripted, saved = iter([3.0, 2.0, 2.5]), []
    real_save = train_mod.save_checkpoint
    mp = pytest.MonkeyPatch()
    mp.setattr(train_mod, "bits_per_dim", lambda *a, **k: next(scripted))
    mp.setattr(train_mod, "save_checkpoint", lambda *a, **k: saved.append(k["extra_files"]) or real_save(*a, **k))
    out = tmp_path_factory.mktemp("curve") / "ckpt"
    try:
        result = train_mod.train(model, tr, te, train_mod.TrainConfig(epochs=3, batch_size=8), out, {"image": {}},
                                 progress=False, log=lambda s: None)
    finally:
        mp.undo()
    return result, out, saved


def test_each_save_holds_the_curve_up_to_its_epoch(trained):
    result, _, saved = trained
    assert result.best_epoch == 2 and len(saved) == 2  # epochs 1 and 2 improved
    for epoch, files in enumerate(saved, start=1):
        assert files["training.png"] == training_curve_png(result.history[:epoch], "bits/dim", epoch)


def test_the_final_curve_covers_every_epoch_and_rings_the_checkpoint(trained):
    result, out, _ = trained
    from pixelrt.models.checkpoint import load_checkpoint

    assert load_checkpoint(out)[1]["training"]["epoch"] == 2  # the weights stay the best epoch's
    on_disk = _rgb(Image.open(out / "training.png"))
    assert (on_disk == _rgb(plot_history(result.history, "bits/dim", 2).image)).all()
    plot = plot_history(result.history, "bits/dim", 2)
    assert tuple(on_disk[plot.point(3, 2.5)[::-1]]) == HELD_OUT  # epoch 3, after the checkpoint, is on it
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.json", "training.png", "weights.safetensors"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["ckpt"]  # no temporary file left beside it


def test_extra_checkpoint_files_must_be_plain_names(tmp_path):
    from pixelrt.models import PixelCNN, PixelCNNConfig
    from pixelrt.models.checkpoint import save_checkpoint

    model = PixelCNN(PixelCNNConfig(channels=1, levels=4, hidden=4, blocks=1, head_hidden=4, input_kernel=3))
    for bad in ("../x.png", "checkpoint.json", ".hidden"):
        with pytest.raises(ValueError, match="plain file name"):
            save_checkpoint(model, tmp_path / "c", {}, extra_files={bad: b""})
    assert not (tmp_path / "c").exists()


# -- receptive-field map ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def field_reports():
    """A small plain PixelCNN (blind spot) and a Gated PixelCNN (none), measured on 5x5 by autograd."""
    from pixelrt.models import GatedPixelCNN, GatedPixelCNNConfig, PixelCNN, PixelCNNConfig
    from pixelrt.parity.receptive_field import measure

    torch.manual_seed(0)
    plain = PixelCNN(PixelCNNConfig(channels=1, levels=4, hidden=4, blocks=2, head_hidden=4, input_kernel=3))
    gated = GatedPixelCNN(GatedPixelCNNConfig(channels=1, levels=4, hidden=4, layers=3, input_kernel=5, head_hidden=4))
    return [measure(plain, "pixelcnn", (1, 5, 5)), measure(gated, "gated", (1, 5, 5))]


def test_cell_map_is_the_dependency_array_and_the_text_map(field_reports):
    from pixelrt.parity.receptive_field import cell_map, most_blind, pixel_map

    for r in field_reports:
        deps = r.audit.dependencies
        i, j = most_blind(deps)
        codes = cell_map(deps, i, j)
        reads = deps[:, i, j].any(axis=(0, 1))
        later = np.arange(25).reshape(5, 5) > i * 5 + j
        assert codes[i, j] == CELL_PIXEL
        assert ((codes == CELL_READ) == (reads & ~later)).all()
        assert ((codes == CELL_BLIND) == (~reads & ~later & (np.arange(25).reshape(5, 5) != i * 5 + j))).all()
        assert ((codes == CELL_FUTURE) | (codes == CELL_VIOLATION) == later).all()
        text = pixel_map(deps, i, j).split("\n")
        assert text[i].split(" ")[j] == "X" and sum(line.count("#") for line in text) == (codes == CELL_READ).sum()
    blind = [(cell_map(r.audit.dependencies, *most_blind(r.audit.dependencies)) == CELL_BLIND).sum()
             for r in field_reports]
    assert blind[0] > 0 and blind[1] == 0  # PixelCNN's blind spot; the gated stacks have none


def test_a_read_later_pixel_is_a_violation():
    from pixelrt.parity.receptive_field import cell_map

    deps = np.zeros((1, 3, 3, 1, 3, 3), bool)
    deps[0, 1, 1, 0, 2, 2] = True  # output (1, 1) reads input (2, 2)
    codes = cell_map(deps, 1, 1)
    assert codes[2, 2] == CELL_VIOLATION and codes[0, 0] == CELL_BLIND and codes[1, 1] == CELL_PIXEL


def test_png_cells_are_the_measured_map(field_reports, tmp_path):
    from pixelrt.parity.receptive_field import cell_map, field_panels, most_blind, save_field_maps

    path = save_field_maps(field_reports, tmp_path / "field.png")
    a = _rgb(Image.open(path))
    plot = draw_cell_maps(field_panels(field_reports))  # the same layout: where each cell landed
    for p, r in enumerate(field_reports):
        codes = cell_map(r.audit.dependencies, *most_blind(r.audit.dependencies))
        for (row, col), code in np.ndenumerate(codes):
            x0, y0, x1, y1 = plot.cell_box(p, row, col)
            assert (a[y0:y1 + 1, x0:x1 + 1] == CELLS[code][0]).all(), (r.name, row, col)
    legend = a[plot.origins[0][1] + 5 * plot.cell:]
    for code in (CELL_PIXEL, CELL_READ, CELL_BLIND, CELL_FUTURE):  # what occurs has its legend swatch
        assert (legend == CELLS[code][0]).all(-1).any()
    assert not (legend == CELLS[CELL_VIOLATION][0]).all(-1).any()  # and what does not occur has none
    assert sorted(p.name for p in tmp_path.iterdir()) == ["field.png"]
