"""Image data sets for training, calibration and evaluation.

Everything here returns quantised images as ``uint8`` arrays shaped
(N, C, H, W) plus the number of grey levels per sub-pixel, because that is
what an autoregressive model's softmax predicts and what the ONNX graphs take.
Only numpy is imported at module load, so the runtime can use
:func:`check_images` without pulling in Pillow or scikit-learn.

Every data problem raises one :class:`~pixelrt.errors.DataError` whose message
names the file, the problem and the fix.
"""
from __future__ import annotations

import gzip
import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixelrt.errors import DataError, PixelrtError

DATASETS: dict[str, str] = {
    "digits": "scikit-learn's bundled 8x8 handwritten digits: 1797 grey images, "
              "17 levels (0..16), with labels; shipped with pixelrt (CC BY 4.0), no download",
}

SPEC_HELP = (
    "'digits' (built in), an .npz file with an array 'x' shaped "
    "(N,C,H,W), (N,H,W,C) or (N,H,W) and optional 'y' (or 'labels') and 'levels', an MNIST "
    "'*-idx3-ubyte[.gz]' file, a CIFAR-10 '*.bin' batch or a directory of "
    "data_batch_*.bin files, or a directory of .png/.jpg/.jpeg images (or of class "
    "subfolders of images: labels in subfolder name order)"
)

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_CIFAR_RECORD = 1 + 3 * 32 * 32


@dataclass(frozen=True)
class Dataset:
    """Quantised images: ``x`` is uint8 (N, C, H, W) with values in [0, levels-1]."""

    x: np.ndarray
    levels: int
    name: str
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        # Cheap structural checks only; values are checked by check_images at load.
        if self.x.dtype != np.uint8 or self.x.ndim != 4 or not self.x.flags.c_contiguous:
            raise DataError(f"{self.name}: Dataset.x must be a C-contiguous uint8 (N, C, H, W) "
                            f"array, got {self.x.dtype} {self.x.shape}; build it with check_images")
        if self.labels is not None and self.labels.shape != (len(self.x),):
            raise DataError(f"{self.name}: {len(self.x)} images but labels shaped "
                            f"{self.labels.shape}; pass one label per image")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)

    def __len__(self) -> int:
        return int(self.x.shape[0])


def _check_levels(levels: object, source: str) -> int:
    """Levels must fit uint8 (2..256) because the graphs take uint8 images."""
    if isinstance(levels, (bool, np.bool_)) or not isinstance(levels, (int, np.integer)) \
            or not 2 <= int(levels) <= 256:
        raise DataError(f"{source}: levels={levels!r} is not an integer in 2..256; "
                        "pass --levels between 2 and 256")
    return int(levels)


def check_images(x: np.ndarray, levels: int, source: str) -> np.ndarray:
    """Validate images and return them as C-contiguous uint8 (N, C, H, W).

    Used on every load and by the runtime before feeding user inputs to a graph,
    so a bad value is reported with its source instead of as a wrong likelihood.
    """
    levels = _check_levels(levels, source)
    x = np.asarray(x)
    if x.ndim != 4:
        raise DataError(f"{source}: expected images shaped (N, C, H, W), got shape {x.shape}; "
                        "reshape the array to NCHW")
    if x.size == 0:
        raise DataError(f"{source}: the image set is empty (shape {x.shape}); "
                        "provide at least one non-empty image")
    if x.dtype == np.bool_:
        x = x.astype(np.uint8)
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise DataError(f"{source}: images contain NaN or infinite values; "
                            "replace them with integer grey levels")
        if not (x == np.floor(x)).all():
            raise DataError(f"{source}: images have fractional values (e.g. scaled to [0, 1]); "
                            f"quantise them to integers in 0..{levels - 1} first")
    elif not np.issubdtype(x.dtype, np.integer):
        raise DataError(f"{source}: images have dtype {x.dtype}, not integers; "
                        "store them as uint8 grey levels")
    lo, hi = x.min(), x.max()
    if lo < 0:
        raise DataError(f"{source}: images have negative values (down to {lo:g}); "
                        f"grey levels must be in 0..{levels - 1}")
    if hi > levels - 1:
        raise DataError(f"{source}: has values up to {hi:g} but levels={levels} allows at most "
                        f"{levels - 1}; re-quantise the images or pass --levels")
    return np.ascontiguousarray(x, dtype=np.uint8)


def _integer_labels(y: np.ndarray, n: int, source: str) -> np.ndarray:
    y = np.asarray(y)
    ok = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.floor(y)).all())
    if not ok or y.shape != (n,):
        raise DataError(f"{source}: labels must be {n} integers (one per image), got {y.dtype} "
                        f"shaped {y.shape}; save them as a 1-D integer array")
    if n and y.min() < 0:
        raise DataError(f"{source}: labels must be non-negative class indices, got {y.min():g}; "
                        "map the classes to 0..K-1")
    return y.astype(np.int64)


def _finish(x: np.ndarray, native: int | None, levels: int | None, name: str,
            labels: np.ndarray | None = None, source: str | None = None) -> Dataset:
    """Pick levels (explicit, else native, else 256), refuse silent requantisation."""
    if levels is not None and native is not None and levels < native:
        raise DataError(f"{name}: levels={levels} is fewer than the {native} levels this data "
                        f"has; omit --levels, or call pixelrt.data.requantize(ds, {levels}) to "
                        "reduce them explicitly")
    chosen = levels if levels is not None else (native if native is not None else 256)
    x = check_images(x, chosen, source or name)
    if labels is not None:
        labels = _integer_labels(labels, len(x), name)
    return Dataset(x=x, levels=chosen, name=name, labels=labels)


DIGITS = Path(__file__).with_name("assets") / "digits.npz"  # licence: assets/DIGITS_LICENSE.txt (CC BY 4.0)
DIGITS_SHA256 = "7ff739dceba19ffed6d2b424e87958786bae9750cdf31ee8e16c1e0512d00c57"


def _load_digits(levels: int | None) -> Dataset:
    """The 1,797 digits scikit-learn ships, stored with pixelrt (no scikit-learn needed, no download)."""
    import hashlib

    try:
        data = DIGITS.read_bytes()
    except OSError as e:
        raise DataError(f"digits: cannot read {DIGITS} ({e.strerror}); reinstall pixelrt") from None
    if hashlib.sha256(data).hexdigest() != DIGITS_SHA256:
        raise DataError(f"digits: {DIGITS} does not match its checksum (a damaged install); reinstall pixelrt")
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        images, target = z["x"], z["y"]
    return _finish(images, 17, levels, "digits", target)


def _to_nchw(x: np.ndarray, source: str) -> np.ndarray:
    """Accept (N,H,W) grey, NCHW, or NHWC (last dim 1/3/4 and second dim not)."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            return x.transpose(0, 3, 1, 2)
        return x
    raise DataError(f"{source}: expected a shape (N,C,H,W), (N,H,W,C) or (N,H,W), got {x.shape}; "
                    "reshape the array")


def _load_npz(path: Path, name: str, levels: int | None) -> Dataset:
    """allow_pickle=False always: a data file must never run code."""
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # an .npy file under an .npz name
            raise DataError(f"{name}: not an .npz archive; save it with np.savez(path, x=images)")
        with z:
            if "x" not in z.files:
                raise DataError(f"{name}: no array named 'x' (found {z.files}); save the images "
                                "with np.savez(path, x=images)")
            arrays = {k: z[k] for k in ("x", "y", "labels", "levels") if k in z.files}
    except DataError:
        raise
    except ValueError as e:
        if "pickle" in str(e):
            raise DataError(f"{name}: an array is stored as Python objects, which pixelrt "
                            "refuses to unpickle; save numeric arrays, e.g. "
                            "np.savez(path, x=np.asarray(x, dtype=np.uint8))") from None
        raise DataError(f"{name}: cannot read the archive ({e}); re-save it with np.savez") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{name}: cannot read the archive ({e}); re-save it with np.savez") from None
    native = None
    if "levels" in arrays:
        lv = arrays["levels"]
        if lv.shape != () or not np.issubdtype(lv.dtype, np.integer):
            raise DataError(f"{name}: array 'levels' must be an integer scalar, got {lv.dtype} "
                            f"shaped {lv.shape}; save it as np.int64(levels)")
        native = _check_levels(int(lv), f"{name}: array 'levels'")
    x = _to_nchw(arrays["x"], f"{name}: array 'x'")
    if "y" in arrays and "labels" in arrays:
        raise DataError(f"{name}: has both 'y' and 'labels' arrays; keep one of them as the labels")
    labels = arrays.get("y", arrays.get("labels"))
    return _finish(x, native, levels, name, labels, f"{name}: array 'x'")


def _read_maybe_gz(path: Path, name: str) -> bytes:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{name}: cannot read ({e}); re-download the file") from None


def _parse_idx(data: bytes, ndim: int, name: str) -> np.ndarray:
    """IDX: 2 zero bytes, type 0x08 (ubyte), ndim, then big-endian int32 dims."""
    magic = bytes([0, 0, 8, ndim])
    if data[:4] != magic:
        raise DataError(f"{name}: not an unsigned-byte IDX file with {ndim} dims (magic "
                        f"{data[:4].hex()} != {magic.hex()}); pass an MNIST *-idx3-ubyte file")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header; re-download the file")
    dims = tuple(int(d) for d in np.frombuffer(data[4:header], dtype=">i4"))
    need = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != need:
        raise DataError(f"{name}: file has {len(data)} bytes but its header {dims} needs {need}; "
                        "the file is truncated or corrupt, re-download it")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _load_idx(path: Path, name: str, levels: int | None) -> Dataset:
    x = _parse_idx(_read_maybe_gz(path, name), 3, name)[:, None]
    labels = None
    base = re.sub(r"\.gz$", "", path.name, flags=re.I).replace("idx3", "idx1").replace("images", "labels")
    for cand in (path.with_name(base), path.with_name(base + ".gz")):
        if cand.is_file():
            labels = _parse_idx(_read_maybe_gz(cand, str(cand)), 1, str(cand))
            if len(labels) != len(x):
                raise DataError(f"{cand}: {len(labels)} labels for {len(x)} images in {name}; "
                                "use the labels file that matches the images")
            break
    return _finish(x, 256, levels, name, labels)


def _batch_key(p: Path) -> tuple[int, str]:
    """Sort data_batch_2 before data_batch_10."""
    m = re.search(r"(\d+)\.bin$", p.name)
    return (int(m.group(1)) if m else -1, p.name)


def _load_cifar(files: list[Path], name: str, levels: int | None) -> Dataset:
    """CIFAR-10 binary: records of 1 label byte + 3x32x32 channel-major pixels."""
    xs, ys = [], []
    for f in files:
        data = _read_maybe_gz(f, str(f))
        if len(data) == 0 or len(data) % _CIFAR_RECORD:
            raise DataError(f"{f}: {len(data)} bytes is not a multiple of {_CIFAR_RECORD} (one "
                            "CIFAR-10 record); the file is truncated or not a CIFAR-10 binary batch")
        rec = np.frombuffer(data, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
        ys.append(rec[:, 0])
        xs.append(rec[:, 1:].reshape(-1, 3, 32, 32))
    return _finish(np.concatenate(xs), 256, levels, name, np.concatenate(ys))


def _read_image(path: Path) -> np.ndarray:
    """One image as (C, H, W) uint8: L/LA/1 -> 1 channel, everything else -> RGB."""
    try:
        from PIL import Image
    except ImportError:
        raise DataError(f"{path}: reading images needs Pillow; pip install \"pixelrt[runtime]\" "
                        "(or pip install pillow)") from None
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                raise DataError(f"{path}: {im.mode} images (16-bit/float) are not supported; "
                                "convert them to 8-bit grey or RGB")
            im = im.convert("L" if im.mode in ("L", "LA", "La", "1") else "RGB")
            a = np.asarray(im, dtype=np.uint8)
    except DataError:
        raise
    except Exception as e:  # Pillow raises many types for corrupt files
        raise DataError(f"{path}: cannot read the image ({e}); fix or remove the file") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _class_folders(path: Path) -> list[tuple[Path, list[Path]]]:
    """Subfolders holding images, sorted by name: one class each (label = position in this list)."""
    out = []
    for sub in sorted((p for p in path.iterdir() if p.is_dir()), key=lambda p: p.name):
        files = sorted((p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES),
                       key=lambda p: p.name)
        if files:
            out.append((sub, files))
    return out


def _load_image_dir(files: list[Path], name: str, levels: int | None,
                    labels: np.ndarray | None = None) -> Dataset:
    images = []
    for f in files:
        a = _read_image(f)
        if images and a.shape != images[0].shape:
            raise DataError(f"{f}: image is {_describe(a)} but {files[0].name} is "
                            f"{_describe(images[0])}; resize/convert so all images match")
        images.append(a)
    return _finish(np.stack(images), 256, levels, name, labels)


def _describe(a: np.ndarray) -> str:
    c, h, w = a.shape
    return f"{w}x{h} with {c} channel{'s' if c > 1 else ''}"


def load_dataset(spec: str, levels: int | None = None) -> Dataset:
    """Load 'digits' or a path (see SPEC_HELP); ``levels`` may only widen the native levels."""
    if levels is not None:
        levels = _check_levels(levels, spec)
    if spec == "digits":
        return _load_digits(levels)
    path = Path(spec)
    if path.is_dir():
        batches_ = sorted(path.glob("data_batch_*.bin"), key=_batch_key)
        if batches_:
            return _load_cifar(batches_, spec, levels)
        images = sorted((p for p in path.iterdir()
                         if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES),
                        key=lambda p: p.name)
        if images:
            return _load_image_dir(images, spec, levels)
        classes = _class_folders(path)
        if classes:  # class subfolders: label k = the k-th subfolder in name order
            files = [f for _, fs in classes for f in fs]
            labels = np.concatenate([np.full(len(fs), k, np.int64) for k, (_, fs) in enumerate(classes)])
            return _load_image_dir(files, spec, levels, labels)
        raise DataError(f"{spec}: directory has no images and no CIFAR-10 batches; pass {SPEC_HELP}")
    if not path.is_file():
        raise DataError(f"{spec}: no such file or directory, and not a built-in data set "
                        f"({', '.join(DATASETS)}); pass {SPEC_HELP}")
    lower = path.name.lower()
    if lower.endswith(".npz"):
        return _load_npz(path, spec, levels)
    if re.search(r"idx3-ubyte(\.gz)?$", lower):
        return _load_idx(path, spec, levels)
    if lower.endswith(".bin"):
        return _load_cifar([path], spec, levels)
    raise DataError(f"{spec}: not a recognised data file; pass {SPEC_HELP}")


def requantize(ds: Dataset, levels: int) -> Dataset:
    """Explicitly reduce grey levels: v -> floor(v * levels / ds.levels)."""
    levels = _check_levels(levels, ds.name)
    if levels > ds.levels:
        raise DataError(f"{ds.name}: cannot requantize {ds.levels} levels up to {levels}; "
                        f"pass levels <= {ds.levels}")
    x = (ds.x.astype(np.int64) * levels) // ds.levels
    return Dataset(x=np.ascontiguousarray(x, dtype=np.uint8), levels=levels,
                   name=ds.name, labels=ds.labels)


def _subset(ds: Dataset, idx: np.ndarray) -> Dataset:
    labels = None if ds.labels is None else ds.labels[idx]
    return Dataset(x=np.ascontiguousarray(ds.x[idx]), levels=ds.levels, name=ds.name, labels=labels)


def split(ds: Dataset, test_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Deterministic disjoint train/test split; each part keeps the source order.

    default_rng(seed).permutation is used so the same seed gives the same split
    on every machine, which keeps reported test likelihoods comparable.
    """
    n = len(ds)
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"{ds.name}: test_fraction={test_fraction} must be between 0 and 1 "
                        "(exclusive); pass e.g. 0.2")
    if n < 2:
        raise DataError(f"{ds.name}: {n} image(s) cannot be split into train and test; "
                        "provide at least 2 images")
    n_test = min(max(int(round(n * test_fraction)), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return _subset(ds, np.sort(perm[n_test:])), _subset(ds, np.sort(perm[:n_test]))


def batches(x: np.ndarray, batch_size: int, shuffle: bool = False,
            seed: int = 0) -> Iterator[np.ndarray]:
    """Yield uint8 batches (the last may be smaller); the order depends only on seed."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DataError(f"batch_size={batch_size!r} must be a positive integer; pass --batch-size >= 1")
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim < 1:
        raise DataError(f"batches: expected a uint8 image array, got {x.dtype} {x.shape}; "
                        "validate it with check_images first")
    order = np.random.default_rng(seed).permutation(len(x)) if shuffle else None
    for start in range(0, len(x), batch_size):
        yield x[start:start + batch_size] if order is None else x[order[start:start + batch_size]]


def data_context(names, ds) -> dict[str, np.ndarray]:
    """The conditioning inputs ``names`` for the images of data set ``ds`` (labels come from the data)."""
    out = {}
    for name in names:
        if name == "label" and ds.labels is not None:
            out[name] = np.asarray(ds.labels, dtype=np.int64)
        elif name == "label":
            raise PixelrtError(f"{ds.name} has no labels, but the model is label-conditional; use labelled data "
                               "(digits, an .npz with 'y'/'labels', MNIST/CIFAR-10 with labels, class subfolders)")
        else:
            raise PixelrtError(f"the model takes a {name!r} input that data sets do not provide; "
                               "use the Python API and pass it as context")
    return out
