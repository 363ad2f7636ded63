"""Tests for pixelrt.data: every loader round-trips exact values; bad data gives one DataError."""
from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from pixelrt.data import (DATASETS, Dataset, batches, check_images, load_dataset,
                          requantize, split)
from pixelrt.errors import DataError

RNG = np.random.default_rng(1234)


# ---------------------------------------------------------------- fixtures

def _write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    head = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}i", *arr.shape)
    data = head + arr.astype(np.uint8).tobytes()
    if gz:
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def _cifar_bytes(x: np.ndarray, y: np.ndarray) -> bytes:
    return b"".join(bytes([int(lab)]) + img.tobytes() for img, lab in zip(x, y))


@pytest.fixture
def mnist(tmp_path: Path):
    x = RNG.integers(0, 256, size=(3, 5, 4), dtype=np.uint8)
    y = np.array([7, 0, 9], dtype=np.uint8)
    return tmp_path, x, y


# ---------------------------------------------------------------- digits

def test_digits_shape_levels_labels():
    ds = load_dataset("digits")
    assert ds.x.shape == (1797, 1, 8, 8) and ds.shape == (1, 8, 8) and len(ds) == 1797
    assert ds.x.dtype == np.uint8 and ds.x.flags.c_contiguous
    assert ds.levels == 17 and ds.x.max() == 16 and ds.x.min() == 0
    assert ds.labels is not None and ds.labels.dtype == np.int64
    assert np.bincount(ds.labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert ds.name == "digits" and "digits" in DATASETS


def test_digits_imports_neither_sklearn_nor_pillow():
    import subprocess
    code = ("import sys, pixelrt.data as d; d.load_dataset('digits'); "
            "print('sklearn' in sys.modules, 'PIL' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_digits_split_deterministic_disjoint_covering():
    ds = load_dataset("digits")
    tr, te = split(ds)
    tr2, te2 = split(ds)
    assert np.array_equal(tr.x, tr2.x) and np.array_equal(te.labels, te2.labels)
    assert (len(tr), len(te)) == (1438, 359)
    # disjoint + covering: rows of the two halves are a re-ordering of the whole set
    both = np.concatenate([tr.x, te.x]).reshape(len(ds), -1)
    assert sorted(map(bytes, both)) == sorted(map(bytes, ds.x.reshape(len(ds), -1)))
    # pinned: the default split must not drift across machines / numpy versions
    assert te.labels[:10].tolist() == [2, 2, 3, 0, 8, 8, 7, 8, 3, 4]
    other = split(ds, seed=1)[1]
    assert not np.array_equal(other.labels, te.labels)


def test_split_indices_disjoint():
    x = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
    ds = Dataset(x=x, levels=256, name="t", labels=np.arange(10, dtype=np.int64))
    tr, te = split(ds, test_fraction=0.3, seed=5)
    assert len(te) == 3 and len(tr) == 7
    assert set(tr.labels) | set(te.labels) == set(range(10)) and not set(tr.labels) & set(te.labels)
    assert np.array_equal(tr.x.ravel(), tr.labels)  # labels follow their images
    with pytest.raises(DataError, match="test_fraction"):
        split(ds, test_fraction=1.0)
    with pytest.raises(DataError, match="cannot be split"):
        split(Dataset(x=x[:1], levels=256, name="one"), 0.5)


def test_requantize_and_levels_guard():
    ds = load_dataset("digits")
    with pytest.raises(DataError, match="requantize"):
        load_dataset("digits", levels=4)
    q = requantize(ds, 4)
    assert q.levels == 4 and q.x.max() == 3
    assert np.array_equal(q.x, (ds.x.astype(int) * 4) // 17)
    with pytest.raises(DataError, match="up to"):
        requantize(q, 8)
    assert load_dataset("digits", levels=32).levels == 32  # widening is allowed


# ---------------------------------------------------------------- npz

def test_npz_nchw_with_labels_and_levels(tmp_path: Path):
    x = RNG.integers(0, 5, size=(4, 3, 6, 7), dtype=np.uint8)
    y = np.array([1, 2, 3, 4])
    p = tmp_path / "d.npz"
    np.savez(p, x=x, y=y, levels=np.int64(5))
    ds = load_dataset(str(p))
    assert np.array_equal(ds.x, x) and ds.levels == 5 and ds.labels.tolist() == [1, 2, 3, 4]
    assert ds.name == str(p)
    with pytest.raises(DataError, match="fewer than the 5 levels"):
        load_dataset(str(p), levels=3)


def test_npz_nhwc_grey_float_and_default_levels(tmp_path: Path):
    x = RNG.integers(0, 256, size=(2, 6, 5, 3), dtype=np.uint8)
    np.savez(tmp_path / "nhwc.npz", x=x)
    ds = load_dataset(str(tmp_path / "nhwc.npz"))
    assert ds.shape == (3, 6, 5) and ds.levels == 256
    assert np.array_equal(ds.x, x.transpose(0, 3, 1, 2)) and ds.labels is None
    g = RNG.integers(0, 10, size=(3, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "grey.npz", x=g)
    ds = load_dataset(str(tmp_path / "grey.npz"), levels=10)
    assert ds.x.shape == (3, 1, 4, 4) and ds.levels == 10 and np.array_equal(ds.x[:, 0], g)


def test_npz_errors(tmp_path: Path):
    p = tmp_path / "big.npz"
    np.savez(p, x=np.full((2, 1, 2, 2), 300, dtype=np.int32))
    with pytest.raises(DataError, match=r"big\.npz: array 'x': has values up to 300 but levels=256"):
        load_dataset(str(p))
    np.savez(p, x=np.full((2, 1, 2, 2), 9, dtype=np.int32))
    with pytest.raises(DataError, match="levels=8 allows at most 7"):
        load_dataset(str(p), levels=8)
    np.savez(tmp_path / "nox.npz", images=np.zeros((1, 1, 2, 2)))
    with pytest.raises(DataError, match=r"nox\.npz: no array named 'x'.*images"):
        load_dataset(str(tmp_path / "nox.npz"))
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 1, 2, 2), dtype=np.uint8))
    with pytest.raises(DataError, match=r"empty\.npz.*empty"):
        load_dataset(str(tmp_path / "empty.npz"))
    np.savez(tmp_path / "rank.npz", x=np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(DataError, match=r"rank\.npz.*got \(2, 2\)"):
        load_dataset(str(tmp_path / "rank.npz"))
    np.savez(tmp_path / "lab.npz", x=np.zeros((2, 1, 2, 2), dtype=np.uint8), y=np.zeros(3))
    with pytest.raises(DataError, match=r"lab\.npz: labels must be 2 integers"):
        load_dataset(str(tmp_path / "lab.npz"))
    np.save(tmp_path / "plain.npy", np.zeros((1, 1, 2, 2), np.uint8))
    (tmp_path / "plain.npy").rename(tmp_path / "plain.npz")
    with pytest.raises(DataError, match=r"plain\.npz: not an \.npz archive"):
        load_dataset(str(tmp_path / "plain.npz"))
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip")
    with pytest.raises(DataError, match=r"junk\.npz"):
        load_dataset(str(tmp_path / "junk.npz"))


def test_npz_object_array_is_refused_without_unpickling(tmp_path: Path):
    p = tmp_path / "obj.npz"
    np.savez(p, x=np.array([np.zeros((1, 2, 2)), "evil"], dtype=object))
    with pytest.raises(DataError, match=r"obj\.npz: .*Python objects"):
        load_dataset(str(p))


# ---------------------------------------------------------------- MNIST IDX

@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip_with_labels(mnist, gz: bool):
    d, x, y = mnist
    suffix = ".gz" if gz else ""
    img = _write_idx(d / f"train-images-idx3-ubyte{suffix}", x, gz)
    _write_idx(d / f"train-labels-idx1-ubyte{suffix}", y, gz)
    ds = load_dataset(str(img))
    assert ds.x.shape == (3, 1, 5, 4) and np.array_equal(ds.x[:, 0], x)
    assert ds.levels == 256 and ds.labels.tolist() == [7, 0, 9]


def test_idx_without_labels_and_errors(mnist):
    d, x, y = mnist
    img = _write_idx(d / "t10k-images-idx3-ubyte", x)
    assert load_dataset(str(img)).labels is None
    img.write_bytes(img.read_bytes()[:-1])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: file has 75 bytes .* needs 76"):
        load_dataset(str(img))
    _write_idx(img, y)  # a label file under an image name: wrong magic
    with pytest.raises(DataError, match="not an unsigned-byte IDX file with 3 dims"):
        load_dataset(str(img))
    _write_idx(img, x)
    _write_idx(d / "t10k-labels-idx1-ubyte", y[:2])
    with pytest.raises(DataError, match="2 labels for 3 images"):
        load_dataset(str(img))
    bad = d / "bad-images-idx3-ubyte.gz"
    bad.write_bytes(b"not gzip data")
    with pytest.raises(DataError, match=r"bad-images-idx3-ubyte\.gz: cannot read"):
        load_dataset(str(bad))


# ---------------------------------------------------------------- CIFAR-10

def test_cifar_file_and_directory(tmp_path: Path):
    x1 = RNG.integers(0, 256, size=(2, 3, 32, 32), dtype=np.uint8)
    x2 = RNG.integers(0, 256, size=(1, 3, 32, 32), dtype=np.uint8)
    (tmp_path / "data_batch_2.bin").write_bytes(_cifar_bytes(x2, [5]))
    (tmp_path / "data_batch_1.bin").write_bytes(_cifar_bytes(x1, [3, 9]))
    (tmp_path / "test_batch.bin").write_bytes(_cifar_bytes(x2, [1]))
    ds = load_dataset(str(tmp_path / "data_batch_1.bin"))
    assert ds.x.shape == (2, 3, 32, 32) and np.array_equal(ds.x, x1)
    assert ds.labels.tolist() == [3, 9] and ds.levels == 256
    ds = load_dataset(str(tmp_path))  # data batches only, in order
    assert np.array_equal(ds.x, np.concatenate([x1, x2])) and ds.labels.tolist() == [3, 9, 5]
    (tmp_path / "data_batch_3.bin").write_bytes(b"\0" * 3000)
    with pytest.raises(DataError, match=r"data_batch_3\.bin: 3000 bytes is not a multiple of 3073"):
        load_dataset(str(tmp_path))


# ---------------------------------------------------------------- image folders

def test_image_dir_grey_and_rgb(tmp_path: Path):
    from PIL import Image
    g = [RNG.integers(0, 256, size=(4, 6), dtype=np.uint8) for _ in range(2)]
    Image.fromarray(g[1]).save(tmp_path / "b.PNG")
    Image.fromarray(g[0]).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("ignored")
    ds = load_dataset(str(tmp_path))
    assert ds.x.shape == (2, 1, 4, 6) and ds.levels == 256
    assert np.array_equal(ds.x[:, 0], np.stack(g)) and ds.labels is None

    rgb = tmp_path / "rgb"
    rgb.mkdir()
    c = RNG.integers(0, 256, size=(3, 5, 3), dtype=np.uint8)
    Image.fromarray(c).save(rgb / "x.png")
    Image.fromarray(np.dstack([c, np.full((3, 5), 128, np.uint8)])).save(rgb / "y.png")  # RGBA
    ds = load_dataset(str(rgb))
    assert ds.x.shape == (2, 3, 3, 5) and np.array_equal(ds.x[0], c.transpose(2, 0, 1))
    assert np.array_equal(ds.x[1], ds.x[0])  # alpha dropped


def test_image_dir_errors(tmp_path: Path):
    from PIL import Image
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(mixed / "1.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(mixed / "2.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(mixed / "3.png")
    with pytest.raises(DataError, match=r"2\.png: image is 4x4 with 3 channels but 1\.png is 4x4 with 1 channel"):
        load_dataset(str(mixed))

    sizes = tmp_path / "sizes"
    sizes.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(sizes / "a.jpg")
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(sizes / "b.jpeg")
    with pytest.raises(DataError, match=r"b\.jpeg: image is 5x4 .* but a\.jpg is 4x4"):
        load_dataset(str(sizes))

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match=r"bad\.png: cannot read the image"):
        load_dataset(str(broken))


def test_unrecognised_paths(tmp_path: Path):
    with pytest.raises(DataError, match=r"nope: no such file.*digits.*npz.*idx3-ubyte.*CIFAR"):
        load_dataset(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="no images and no CIFAR-10 batches"):
        load_dataset(str(tmp_path))
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(DataError, match=r"data\.csv: not a recognised data file"):
        load_dataset(str(tmp_path / "data.csv"))
    with pytest.raises(DataError, match="levels=1 is not an integer in 2..256"):
        load_dataset("digits", levels=1)


# ---------------------------------------------------------------- check_images / batches

def test_check_images():
    ok = check_images(np.array([[[[0.0, 3.0]]]]), 4, "in")
    assert ok.dtype == np.uint8 and ok.tolist() == [[[[0, 3]]]]
    with pytest.raises(DataError, match="req: images contain NaN"):
        check_images(np.array([[[[np.nan]]]]), 4, "req")
    with pytest.raises(DataError, match="negative values"):
        check_images(np.array([[[[-1]]]]), 4, "req")
    with pytest.raises(DataError, match="values up to 4 but levels=4 allows at most 3"):
        check_images(np.array([[[[4]]]]), 4, "req")
    with pytest.raises(DataError, match=r"expected images shaped \(N, C, H, W\), got shape \(2, 2\)"):
        check_images(np.zeros((2, 2)), 4, "req")
    with pytest.raises(DataError, match="fractional"):
        check_images(np.array([[[[0.5]]]]), 4, "req")
    with pytest.raises(DataError, match="empty"):
        check_images(np.zeros((0, 1, 2, 2)), 4, "req")
    with pytest.raises(DataError, match="2..256"):
        check_images(np.zeros((1, 1, 2, 2)), 257, "req")
    with pytest.raises(DataError, match="dtype <U1"):
        check_images(np.array([[[["a"]]]]), 4, "req")


def test_batches_deterministic():
    x = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
    plain = list(batches(x, 4, shuffle=False, seed=0))
    assert [len(b) for b in plain] == [4, 4, 2] and np.array_equal(np.concatenate(plain), x)
    a = np.concatenate(list(batches(x, 3, shuffle=True, seed=7)))
    b = np.concatenate(list(batches(x, 3, shuffle=True, seed=7)))
    c = np.concatenate(list(batches(x, 3, shuffle=True, seed=8)))
    assert np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(a, x)
    assert sorted(a.ravel().tolist()) == list(range(10)) and a.dtype == np.uint8
    with pytest.raises(DataError, match="batch_size"):
        next(batches(x, 0, shuffle=False, seed=0))
    with pytest.raises(DataError, match="uint8"):
        next(batches(x.astype(np.float32), 2, shuffle=False, seed=0))


def test_digits_without_sklearn_equals_sklearns_copy(monkeypatch):
    """The shipped digits need no scikit-learn (a runtime-only install) and are exactly the ones it ships."""
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)  # `import sklearn` now fails
    ds = load_dataset("digits")
    monkeypatch.undo()
    assert ds.x.shape == (1797, 1, 8, 8) and ds.levels == 17 and ds.labels.shape == (1797,)
    import importlib.util

    # scikit-learn's own file, read without importing it (sklearn.datasets pulls in scipy: seconds)
    csv = Path(importlib.util.find_spec("sklearn").submodule_search_locations[0]) / "datasets/data/digits.csv.gz"
    table = np.loadtxt(csv, delimiter=",", dtype=np.int64, ndmin=2)
    assert np.array_equal(ds.x.reshape(-1, 64), table[:, :64])
    assert np.array_equal(ds.labels, table[:, 64])


def test_damaged_digits_asset_is_refused(tmp_path, monkeypatch):
    import pixelrt.data as data

    bad = tmp_path / "digits.npz"
    bad.write_bytes(data.DIGITS.read_bytes()[:-10])
    monkeypatch.setattr(data, "DIGITS", bad)
    with pytest.raises(DataError, match="does not match its checksum .*reinstall pixelrt"):
        load_dataset("digits")
    monkeypatch.setattr(data, "DIGITS", tmp_path / "missing.npz")
    with pytest.raises(DataError, match="cannot read .*reinstall pixelrt"):
        load_dataset("digits")
