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
