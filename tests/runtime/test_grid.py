"""Image grids: layout, scaling of levels to 0..255, and an atomic PNG write."""
import numpy as np
import pytest
from PIL import Image

from pixelrt.errors import PixelrtError
from pixelrt.runtime.grid import make_grid, save_grid


def test_grey_grid_layout_and_level_scaling():
    images = np.zeros((5, 1, 2, 3), np.uint8)
    images[4] = 16  # the last image is all white at 17 levels
    grid = make_grid(images, levels=17, columns=3, scale=1, pad=1)
    assert grid.shape == (2 * (2 + 1) + 1, 3 * (3 + 1) + 1)
    assert grid[1 + 3, 1 + 4] == 255  # image 4: row 1, column 1
    assert grid[1, 1] == 0 and grid[0, 0] == 160  # an image pixel, then the grey padding


def test_rgb_grid_is_height_width_channels_and_small_images_are_upscaled():
    images = np.random.default_rng(0).integers(0, 4, (4, 3, 8, 8)).astype(np.uint8)
    grid = make_grid(images, levels=4)
    assert grid.ndim == 3 and grid.shape[2] == 3
    assert grid.shape[0] >= 2 * 8 * 8  # 8x8 images are scaled by 8 to be visible


def test_save_grid_writes_a_png_and_no_temp_file(tmp_path):
    path = save_grid(np.ones((2, 1, 4, 4), np.uint8), levels=2, path=tmp_path / "g.png")
    assert Image.open(path).size[0] > 4
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"]


def test_empty_or_wrong_rank_is_refused():
    with pytest.raises(PixelrtError, match="non-empty"):
        make_grid(np.zeros((0, 1, 4, 4), np.uint8), levels=2)
    with pytest.raises(PixelrtError, match="non-empty"):
        make_grid(np.zeros((4, 4), np.uint8), levels=2)


def test_row_labels_are_drawn_in_a_left_margin_beside_their_row():
    images = np.zeros((6, 1, 8, 8), np.uint8)  # black digits: any dark margin pixel is label text
    plain = make_grid(images, levels=2, columns=2)
    labelled = make_grid(images, levels=2, columns=2, row_labels=["label 0", "label 1", "label 22"])
    margin = labelled.shape[1] - plain.shape[1]
    assert labelled.shape[0] == plain.shape[0] and margin > 20
    assert (labelled[:, margin:] == plain).all()  # the images are untouched
    row = 64 + 2  # 8x8 shown 8x, 2 px apart
    for r in range(3):
        band = labelled[2 + r * row: 2 + r * row + 64, :margin]
        assert (band < 80).sum() > 20, f"row {r} has no label"
    assert (labelled[:2, :margin] == 160).all()  # above the first row: background only
    widths = [np.nonzero((labelled[2 + r * row: 2 + r * row + 64, :margin] < 80).any(0))[0] for r in range(3)]
    assert widths[2][0] < widths[0][0] - 3 and abs(widths[0][-1] - widths[2][-1]) <= 2  # right-aligned


def test_row_labels_fit_unscaled_tiny_images_and_rgb():
    images = np.zeros((4, 1, 8, 8), np.uint8)
    tiny = make_grid(images, levels=2, columns=2, scale=1, row_labels=["a", "b"])
    margin = tiny.shape[1] - make_grid(images, levels=2, columns=2, scale=1).shape[1]
    assert tiny.shape[0] == 2 * (8 + 2) + 2  # an 8 px font: the rows keep their height
    for r in range(2):
        assert (tiny[2 + r * 10: 2 + r * 10 + 8, :margin] < 80).any(), f"row {r} has no label"
    rgb = make_grid(np.zeros((2, 3, 4, 4), np.uint8), levels=2, columns=1, row_labels=["r0", "r1"])
    assert rgb.ndim == 3 and rgb.shape[2] == 3
    with pytest.raises(PixelrtError, match="row_labels has 1 entries for a grid of 2 rows"):
        make_grid(np.zeros((2, 1, 4, 4), np.uint8), levels=2, columns=1, row_labels=["only one"])


def test_save_grid_with_labels_and_a_stale_temp_name_in_the_way(tmp_path):
    (tmp_path / ".g.png.tmp").mkdir()  # a fixed temporary name (another writer's, or a crash's) must not block
    path = save_grid(np.ones((4, 1, 4, 4), np.uint8), levels=2, path=tmp_path / "g.png", columns=2,
                     row_labels=["label 3", "label 4"])
    img = np.asarray(Image.open(path))
    assert img.shape[1] > make_grid(np.ones((4, 1, 4, 4), np.uint8), levels=2, columns=2).shape[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".g.png.tmp", "g.png"]
