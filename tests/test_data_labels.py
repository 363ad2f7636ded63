"""Labels for conditional training: npz 'y' or 'labels', class subfolders of images, digits' last column."""
import numpy as np
import pytest
from PIL import Image

from pixelrt.data import load_dataset
from pixelrt.errors import DataError


def test_npz_labels_under_either_name(tmp_path):
    x = np.zeros((4, 1, 2, 2), np.uint8)
    np.savez(tmp_path / "a.npz", x=x, labels=np.array([0, 1, 2, 1]))
    assert list(load_dataset(str(tmp_path / "a.npz")).labels) == [0, 1, 2, 1]
    np.savez(tmp_path / "b.npz", x=x, y=np.array([1, 1, 0, 0]), labels=np.array([0, 1, 2, 1]))
    with pytest.raises(DataError, match="both 'y' and 'labels'"):
        load_dataset(str(tmp_path / "b.npz"))
    np.savez(tmp_path / "c.npz", x=x, y=np.array([0, -1, 2, 1]))
    with pytest.raises(DataError, match="non-negative"):
        load_dataset(str(tmp_path / "c.npz"))


def test_class_subfolders_give_labels_in_name_order(tmp_path):
    for k, name in enumerate(["cat", "ant", "bee"]):
        (tmp_path / name).mkdir()
        for i in range(k + 1):
            Image.fromarray(np.full((3, 3), 10 * k, np.uint8)).save(tmp_path / name / f"{i}.png")
    ds = load_dataset(str(tmp_path))
    assert len(ds) == 6
    # ant (0) has 2 images, bee (1) 3, cat (2) 1; each image's grey value identifies its folder
    assert list(ds.labels) == [0, 0, 1, 1, 1, 2]
    assert list(ds.x[:, 0, 0, 0]) == [10, 10, 20, 20, 20, 0]


def test_digits_have_their_labels():
    ds = load_dataset("digits")
    assert ds.labels.shape == (1797,) and set(ds.labels) == set(range(10))
