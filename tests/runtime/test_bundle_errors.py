"""Bad input never corrupts anything and always gives one clear error.

Every case here builds its broken input from a *copy* of a session fixture
bundle (the fixtures are shared and must never be modified in place) and
asserts the exception type *and* that the message names the problem and the fix.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from onnxruntime.capi.onnxruntime_pybind11_state import Fail as OrtFail

from pixelrt.cli import main
from pixelrt.errors import BundleError, DataError, PixelrtError
from pixelrt.runtime.backends import open_backend
from pixelrt.runtime.bundle import MANIFEST, ImageSpec, load_bundle, sha256_file
from pixelrt.runtime.evaluate import evaluate
from pixelrt.runtime.ort_backend import OrtBackend
from pixelrt.runtime.sampler import check_noise, make_noise, step_loop

REEXPORT = re.escape("re-run `pixelrt export")


# ---------------------------------------------------------------- helpers

def _copy(bundle, tmp_path: Path) -> Path:
    dst = tmp_path / "b"
    shutil.copytree(bundle.root, dst)
    return dst


def _read(root: Path) -> dict:
    return json.loads((root / MANIFEST).read_text())


def _write(root: Path, manifest: dict) -> None:
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2))


def _rehash(root: Path, name: str) -> None:
    """Make the manifest's sha256 of ``name`` match the file again (so the checksum passes)."""
    m = _read(root)
    m["files"][name]["sha256"] = sha256_file(root / name)
    m["files"][name]["bytes"] = (root / name).stat().st_size
    _write(root, m)


def _flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


class _MustNotRun:
    """A runner that fails the test if the step loop reaches the graph."""

    def infer(self, feeds, check=True):
        raise AssertionError("step_loop ran the graph although its input was invalid")


# ---------------------------------------------------------------- load_bundle

def test_missing_bundle_dir(tmp_path):
    with pytest.raises(BundleError, match=r"does not exist; create it with `pixelrt export"):
        load_bundle(tmp_path / "nope")


def test_file_instead_of_dir(tmp_path):
    f = tmp_path / "bundle.onnx"
    f.write_bytes(b"not a dir")
    with pytest.raises(BundleError, match=r"is a file, not a bundle directory"):
        load_bundle(f)


def test_dir_without_manifest(grey_bundle, tmp_path):
    root = _copy(grey_bundle[1], tmp_path)
    (root / MANIFEST).unlink()
    with pytest.raises(BundleError, match=rf"has no manifest\.json, so it is not a pixelrt bundle; {REEXPORT}"):
        load_bundle(root)


@pytest.mark.parametrize("content", [None, b"", b"\xff\xfe\x00garbage"], ids=["truncated", "empty", "binary"])
def test_manifest_not_json(grey_bundle, tmp_path, content):
    root = _copy(grey_bundle[1], tmp_path)
    path = root / MANIFEST
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if content is None else content)
    with pytest.raises(BundleError, match=rf"manifest\.json is corrupt \(not valid JSON.*{REEXPORT}"):
        load_bundle(root)


def test_manifest_json_but_not_an_object(grey_bundle, tmp_path):
    root = _copy(grey_bundle[1], tmp_path)
    (root / MANIFEST).write_text("[1, 2, 3]")
    with pytest.raises(BundleError, match=r"is not a pixelrt bundle manifest \(format is not 'pixelrt-bundle'\)"):
        load_bundle(root)


def test_manifest_wrong_format(grey_bundle, tmp_path):
    root = _copy(grey_bundle[1], tmp_path)
    m = _read(root)
    m["format"] = "onnx-model-zoo"
    _write(root, m)
    with pytest.raises(BundleError,
                       match=rf"not a pixelrt bundle manifest \(format is not 'pixelrt-bundle'\); {REEXPORT}"):
        load_bundle(root)


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_manifest_wrong_format_version(grey_bundle, tmp_path, version):
    root = _copy(grey_bundle[1], tmp_path)
    m = _read(root)
    if version is None:
        del m["format_version"]
    else:
        m["format_version"] = version
    _write(root, m)
    with pytest.raises(BundleError,
                       match=rf"has format version {re.escape(repr(version))}; this pixelrt reads version 1"):
        load_bundle(root)


@pytest.mark.parametrize("key", ["image", "graphs", "files"])
def test_manifest_missing_key(grey_bundle, tmp_path, key):
    root = _copy(grey_bundle[1], tmp_path)
    m = _read(root)
    del m[key]
    _write(root, m)
    with pytest.raises(BundleError, match=rf"is missing or has a malformed entry .*{key}.*{REEXPORT}"):
        load_bundle(root)


def test_manifest_malformed_image(grey_bundle, tmp_path):
    root = _copy(grey_bundle[1], tmp_path)
    m = _read(root)
    m["image"]["height"] = "five"
    _write(root, m)
    with pytest.raises(BundleError, match=r"is missing or has a malformed entry"):
        load_bundle(root)


def test_manifest_graphs_not_a_mapping(grey_bundle, tmp_path):
    root = _copy(grey_bundle[1], tmp_path)
    m = _read(root)
    m["graphs"] = ["full.onnx", "step.onnx"]
    _write(root, m)
    with pytest.raises(BundleError, match=r"manifest\.json.*graphs"):
        load_bundle(root)


def test_manifest_file_entry_not_a_mapping(grey_bundle, tmp_path):
    root = _copy(grey_bundle[1], tmp_path)
    m = _read(root)
    m["files"]["step.onnx"] = m["files"]["step.onnx"]["sha256"]  # a bare string instead of {"sha256": ...}
    _write(root, m)
    with pytest.raises(BundleError, match=r"manifest\.json.*step\.onnx"):
        load_bundle(root)


@pytest.mark.parametrize("name", ["step.onnx", "full.onnx", "reference.npz"])
def test_listed_file_deleted(grey_bundle, tmp_path, name):
    root = _copy(grey_bundle[1], tmp_path)
    (root / name).unlink()
    with pytest.raises(BundleError, match=rf"manifest lists {re.escape(name)} but the file is missing.*{REEXPORT}"):
        load_bundle(root)


@pytest.mark.parametrize("name", ["step.onnx", "full.onnx", "reference.npz"])
def test_flipped_byte_is_a_checksum_mismatch(grey_bundle, tmp_path, name):
    root = _copy(grey_bundle[1], tmp_path)
    _flip_byte(root / name)
    with pytest.raises(BundleError,
                       match=rf"{re.escape(name)}: sha256 mismatch .*changed or truncated after export; {REEXPORT}"):
        load_bundle(root)
    load_bundle(root, verify=False)  # the structure is intact: only the checksum catches this


def test_truncated_file_is_a_checksum_mismatch(grey_bundle, tmp_path):
    root = _copy(grey_bundle[1], tmp_path)
    p = root / "full.onnx"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(BundleError, match=rf"full\.onnx: sha256 mismatch.*{REEXPORT}"):
        load_bundle(root)


@pytest.mark.parametrize("outside", ["../step.onnx", "sub/../../step.onnx", "ABS"])
def test_manifest_path_outside_bundle(grey_bundle, tmp_path, outside):
    root = _copy(grey_bundle[1], tmp_path)
    # A real file with the right checksum sits outside: only the path check can stop it.
    shutil.copy(root / "step.onnx", tmp_path / "step.onnx")
    if outside == "ABS":
        outside = str(tmp_path / "step.onnx")
    m = _read(root)
    m["files"][outside] = m["files"].pop("step.onnx")
    m["graphs"]["step"]["file"] = outside
    _write(root, m)
    with pytest.raises(BundleError,
                       match=rf"lists a file outside the bundle \({re.escape(repr(outside))}\); {REEXPORT}"):
        load_bundle(root)


def test_graph_not_listed_in_files(grey_bundle, tmp_path):
    root = _copy(grey_bundle[1], tmp_path)
    m = _read(root)
    del m["files"]["step.onnx"]  # the graph would be loaded without a checksum
    _write(root, m)
    with pytest.raises(BundleError, match=r"malformed entry .*files\['step\.onnx'\]"):
        load_bundle(root)


def test_graph_path_unknown_graph(grey_bundle):
    with pytest.raises(BundleError, match=r"has no 'row' graph \(it has: full, step\)"):
        grey_bundle[1].graph_path("row")


def test_corrupt_reference_npz_after_checksum(grey_bundle, tmp_path):
    root = _copy(grey_bundle[1], tmp_path)
    (root / "reference.npz").write_bytes(b"PK\x03\x04 not really a zip")
    _rehash(root, "reference.npz")
    b = load_bundle(root)
    with pytest.raises(BundleError, match=rf"reference\.npz: cannot read reference data.*{REEXPORT}"):
        b.reference()


def test_failed_load_changes_nothing(grey_bundle, tmp_path):
    root = _copy(grey_bundle[1], tmp_path)
    _flip_byte(root / "step.onnx")
    before = _tree(root)
    with pytest.raises(BundleError):
        load_bundle(root)
    assert _tree(root) == before


# ---------------------------------------------------------------- graphs ONNX Runtime cannot load

@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty"])
def test_bad_graph_with_matching_checksum(grey_bundle, tmp_path, kind):
    root = _copy(grey_bundle[1], tmp_path)
    p = root / "step.onnx"
    data = p.read_bytes()
    p.write_bytes({"truncated": data[: len(data) // 3],
                   "garbage": np.random.default_rng(0).bytes(4096),
                   "empty": b""}[kind])
    _rehash(root, "step.onnx")
    b = load_bundle(root)  # the checksum passes: the damage is only visible to ONNX Runtime
    backend = OrtBackend(b.graph_path("step"))
    with pytest.raises(BundleError, match=rf"step\.onnx: ONNX Runtime cannot load this graph \(.*\); {REEXPORT}"):
        backend.activate()
    assert not backend.active and backend.session is None


def test_unknown_runtime_and_device(grey_bundle):
    path = grey_bundle[1].graph_path("step")
    with pytest.raises(PixelrtError, match=r"unknown runtime 'trt'; choose one of: ort, ort-cuda"):
        open_backend("trt", path)
    with pytest.raises(PixelrtError, match=r"unknown ONNX Runtime device 'tpu'; choose one of cpu, cuda"):
        OrtBackend(path, device="tpu")


# ---------------------------------------------------------------- evaluate()

@pytest.fixture(scope="module")
def grey_full(grey_bundle):
    with OrtBackend(grey_bundle[1].graph_path("full")) as full:
        yield full


def test_evaluate_accepts_the_reference_batch(grey_bundle, grey_full):
    b = grey_bundle[1]
    ref = b.reference()
    res = evaluate(grey_full, b, ref["x"])
    np.testing.assert_allclose(res.loglik, ref["loglik"], atol=1e-4)


@pytest.mark.parametrize("shape", [(3, 1, 8, 8), (3, 1, 6, 5), (3, 3, 5, 6)])
def test_evaluate_wrong_image_shape(grey_bundle, grey_full, shape):
    b = grey_bundle[1]
    x = np.zeros(shape, dtype=np.uint8)
    got = "x".join(map(str, shape[1:]))
    with pytest.raises(DataError, match=rf"images are {got} \(C x H x W\) but the bundle .* was exported for 1x5x6"):
        evaluate(grey_full, b, x)


@pytest.mark.parametrize("shape", [(1, 5, 6), (5, 6), (2, 1, 1, 5, 6)])
def test_evaluate_wrong_rank(grey_bundle, grey_full, shape):
    with pytest.raises(DataError, match=rf"expected images shaped \(N, C, H, W\), got shape {re.escape(str(shape))}"):
        evaluate(grey_full, grey_bundle[1], np.zeros(shape, dtype=np.uint8))


def test_evaluate_values_out_of_range(grey_bundle, grey_full):
    b = grey_bundle[1]  # 7 levels: 0..6
    x = b.reference()["x"].copy()
    x[0, 0, 2, 3] = 7
    with pytest.raises(DataError, match=r"has values up to 7 but levels=7 allows at most 6"):
        evaluate(grey_full, b, x)
    neg = np.zeros((1, 1, 5, 6), np.int16)
    neg[0, 0, 4, 4] = -1
    with pytest.raises(DataError, match=r"negative values \(down to -1\); grey levels must be in 0\.\.6"):
        evaluate(grey_full, b, neg)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_evaluate_non_finite(grey_bundle, grey_full, bad):
    b = grey_bundle[1]
    x = b.reference()["x"].astype(np.float32)
    x[1, 0, 0, 0] = bad
    with pytest.raises(DataError, match=r"images contain NaN or infinite values"):
        evaluate(grey_full, b, x)


def test_evaluate_fractional_and_empty(grey_bundle, grey_full):
    b = grey_bundle[1]
    x = b.reference()["x"].astype(np.float32) / 6.0
    x[0, 0, 0, 0] = 0.5
    with pytest.raises(DataError, match=r"fractional values"):
        evaluate(grey_full, b, x)
    with pytest.raises(DataError, match=r"the image set is empty"):
        evaluate(grey_full, b, np.zeros((0, 1, 5, 6), dtype=np.uint8))


def test_evaluate_error_names_the_source(grey_bundle, grey_full):
    with pytest.raises(DataError, match=r"^my\.npz: "):
        evaluate(grey_full, grey_bundle[1], np.full((1, 1, 5, 6), 99, np.uint8), source="my.npz")


# ---------------------------------------------------------------- step_loop()

def test_step_loop_nan_noise(grey_bundle):
    b = grey_bundle[1]
    noise = make_noise(2, b.image, 0)
    noise[1, 0, 4, 5] = np.nan
    with pytest.raises(PixelrtError, match=r"noise contains NaN or infinity; draw it with make_noise"):
        step_loop(_MustNotRun(), b.image, b.state, noise)


@pytest.mark.parametrize("bad", [1.0, -0.25, 3.0])
def test_step_loop_noise_out_of_range(grey_bundle, bad):
    b = grey_bundle[1]
    noise = make_noise(2, b.image, 0)
    noise[0, 0, 1, 1] = bad
    with pytest.raises(PixelrtError, match=r"noise must lie in \[0, 1\), got .*draw it with make_noise"):
        step_loop(_MustNotRun(), b.image, b.state, noise)


@pytest.mark.parametrize("shape", [(2, 1, 6, 5), (2, 3, 5, 6), (2, 5, 6), (2, 1, 5, 6, 1)])
def test_step_loop_wrong_noise_shape(grey_bundle, shape):
    b = grey_bundle[1]
    noise = np.full(shape, 0.5, np.float32)
    with pytest.raises(PixelrtError, match=rf"noise has shape {re.escape(str(shape))}, expected \(2, 1, 5, 6\)"):
        step_loop(_MustNotRun(), b.image, b.state, noise)


def test_check_noise_accepts_make_noise():
    image = ImageSpec(3, 4, 5, 5)
    noise = make_noise(3, image, 7)
    assert noise.dtype == np.float32 and noise.shape == (3, 3, 4, 5)
    assert check_noise(noise, 3, image) is noise
    np.testing.assert_array_equal(noise, make_noise(3, image, 7))  # one seed, one noise


@pytest.mark.parametrize("shape", [(2, 1, 5, 5), (3, 1, 5, 6), (2, 5, 6)])
def test_step_loop_forced_wrong_shape(grey_bundle, shape):
    b = grey_bundle[1]
    with pytest.raises(PixelrtError,
                       match=rf"forced images have shape {re.escape(str(shape))}, expected \(2, 1, 5, 6\)"):
        step_loop(_MustNotRun(), b.image, b.state, make_noise(2, b.image, 0), force=np.zeros(shape, np.uint8))


@pytest.fixture(scope="module")
def grey_step(grey_bundle):
    with OrtBackend(grey_bundle[1].graph_path("step")) as step:
        yield step


def test_step_loop_forced_values_too_large(grey_bundle, grey_step):
    b = grey_bundle[1]
    force = np.full((2, 1, 5, 6), 50, np.int64)
    with pytest.raises(DataError, match=r"forced images.*levels"):
        step_loop(grey_step, b.image, b.state, make_noise(2, b.image, 0), force=force)


def test_step_loop_forced_values_negative(grey_bundle, grey_step):
    b = grey_bundle[1]
    force = b.reference()["x"][:2].astype(np.int64)
    force[0, 0, 0, 0] = -3
    with pytest.raises(DataError, match=r"forced images.*negative"):
        step_loop(grey_step, b.image, b.state, make_noise(2, b.image, 0), force=force)


# ---------------------------------------------------------------- Backend.check()

def _step_feeds(bundle, batch: int = 2) -> dict[str, np.ndarray]:
    C = bundle.image.channels
    feeds = {s.name: s.allocate(batch) for s in bundle.state}
    feeds.update(pixel=np.zeros((batch, C), np.int64), row=np.array(0, np.int64), col=np.array(0, np.int64),
                 channel=np.array(0, np.int64), force=np.full(batch, -1, np.int64),
                 noise=np.full(batch, 0.5, np.float32))
    return feeds


def test_check_accepts_valid_feeds(grey_bundle, grey_step):
    feeds = _step_feeds(grey_bundle[1])
    grey_step.check(feeds)  # must not raise
    out = grey_step.infer(feeds)
    assert out["value"].shape == (2,) and 0 <= out["value"].min() and out["value"].max() < 7


def test_check_missing_input(grey_bundle, grey_step):
    feeds = _step_feeds(grey_bundle[1])
    del feeds["noise"]
    with pytest.raises(PixelrtError, match=r"step\.onnx: inputs do not match the graph \(missing: \['noise'\], "
                                           r"unexpected: none\).*re-run `pixelrt export`"):
        grey_step.infer(feeds)


def test_check_unknown_input(grey_bundle, grey_step):
    feeds = _step_feeds(grey_bundle[1])
    feeds["temperature"] = np.array(1.0, np.float32)
    with pytest.raises(PixelrtError, match=r"missing: none, unexpected: \['temperature'\]"):
        grey_step.check(feeds)


def test_check_wrong_dtype(grey_bundle, grey_step):
    feeds = _step_feeds(grey_bundle[1])
    feeds["noise"] = feeds["noise"].astype(np.float64)
    with pytest.raises(PixelrtError, match=r"step\.onnx: input 'noise' must be float32, got float64"):
        grey_step.check(feeds)
    feeds = _step_feeds(grey_bundle[1])
    feeds["row"] = 0  # a Python int, not an array
    with pytest.raises(PixelrtError, match=r"input 'row' must be int64, got int"):
        grey_step.check(feeds)


def test_check_wrong_fixed_dim(grey_bundle, grey_step):
    feeds = _step_feeds(grey_bundle[1])
    name = grey_bundle[1].state[0].name
    shape = list(feeds[name].shape)
    shape[3] -= 1
    feeds[name] = np.zeros(shape, np.float32)
    with pytest.raises(PixelrtError, match=rf"input '{name}' has shape {re.escape(str(tuple(shape)))}, "
                                           r"the graph expects \(None, "):
        grey_step.check(feeds)


def test_check_wrong_rank(grey_bundle, grey_step, grey_full):
    feeds = _step_feeds(grey_bundle[1])
    feeds["row"] = np.array([0], np.int64)
    with pytest.raises(PixelrtError, match=r"input 'row' has shape \(1,\), the graph expects \(\)"):
        grey_step.check(feeds)
    with pytest.raises(PixelrtError, match=r"full\.onnx: input 'x' has shape \(2, 5, 6\)"):
        grey_full.check({"x": np.zeros((2, 5, 6), np.uint8)})


# ---------------------------------------------------------------- CLI: one line, exit 2, no traceback

def _cli(capsys, argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str, command: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"pixelrt {command}: error: "), lines[0]
    return lines[0]


def test_cli_sample_missing_bundle(capsys, tmp_path):
    code, out, err = _cli(capsys, ["sample", tmp_path / "nope", "-n", 2, "-o", tmp_path / "s.png", "--no-progress"])
    assert code == 2
    assert "does not exist; create it with `pixelrt export" in _one_error_line(err, "sample")
    assert out == ""
    assert not (tmp_path / "s.png").exists()


def test_cli_eval_corrupt_bundle(capsys, grey_bundle, tmp_path):
    root = _copy(grey_bundle[1], tmp_path)
    _flip_byte(root / "full.onnx")
    code, out, err = _cli(capsys, ["eval", root])
    assert code == 2
    line = _one_error_line(err, "eval")
    assert "full.onnx: sha256 mismatch" in line and "re-run `pixelrt export" in line


def test_cli_sample_unloadable_graph(capsys, grey_bundle, tmp_path):
    root = _copy(grey_bundle[1], tmp_path)
    (root / "step.onnx").write_bytes(b"\x08\x07garbage")
    _rehash(root, "step.onnx")
    code, out, err = _cli(capsys, ["sample", root, "-n", 2, "-o", tmp_path / "s.png", "--no-progress"])
    assert code == 2
    assert "ONNX Runtime cannot load this graph" in _one_error_line(err, "sample")
    assert not (tmp_path / "s.png").exists()


@pytest.mark.parametrize("n", [0, -3])
def test_cli_sample_n_zero(capsys, grey_bundle, tmp_path, n):
    code, out, err = _cli(capsys, ["sample", grey_bundle[1].root, "-n", n, "-o", tmp_path / "s.png"])
    assert code == 2
    assert f"-n must be at least 1, got {n}" in _one_error_line(err, "sample")
    assert not (tmp_path / "s.png").exists()


def test_cli_info_corrupt_manifest(capsys, grey_bundle, tmp_path):
    root = _copy(grey_bundle[1], tmp_path)
    (root / MANIFEST).write_text("{\"format\": ")
    code, out, err = _cli(capsys, ["info", root])
    assert code == 2
    assert "manifest.json is corrupt (not valid JSON" in _one_error_line(err, "info")


def test_cli_info_manifest_without_reference(capsys, grey_bundle, tmp_path):
    root = _copy(grey_bundle[1], tmp_path)
    m = _read(root)
    del m["reference"]
    _write(root, m)
    code, out, err = _cli(capsys, ["info", root])
    assert code == 2
    assert "reference" in _one_error_line(err, "info")


def test_cli_info_good_bundle(capsys, grey_bundle):
    code, out, err = _cli(capsys, ["info", grey_bundle[1].root])
    assert code == 0 and err == ""
    assert "image 1x5x6, 7 levels" in out and "checksums verified" in out
