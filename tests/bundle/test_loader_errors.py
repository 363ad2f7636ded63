"""Bad input never corrupts anything and always gives one clear error.

Every case here builds its broken input from a *copy* of a session fixture
bundle (the fixtures are shared and must never be modified in place) and
asserts the exception type *and* that the message names the problem and the fix.
"""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from pixelrt.errors import BundleError, PixelrtError
from pixelrt.runtime.backends import open_backend
from pixelrt.bundle import FORMAT, MANIFEST, Manifest, load_bundle
from pixelrt.bundle.fields import read_document
from pixelrt.runtime.ort_backend import OrtBackend

REEXPORT = re.escape("re-run `pixelrt export")
from tests.runtime.bundle_edits import copy_bundle, flip_byte, read_manifest, rehash, file_digests, write_manifest_json

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
    root = copy_bundle(grey_bundle[1], tmp_path)
    (root / MANIFEST).unlink()
    with pytest.raises(BundleError, match=rf"has no manifest\.json, so it is not a pixelrt bundle; {REEXPORT}"):
        load_bundle(root)


@pytest.mark.parametrize("content", [None, b"", b"\xff\xfe\x00garbage"], ids=["truncated", "empty", "binary"])
def test_manifest_not_json(grey_bundle, tmp_path, content):
    root = copy_bundle(grey_bundle[1], tmp_path)
    path = root / MANIFEST
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if content is None else content)
    with pytest.raises(BundleError, match=rf"manifest\.json is corrupt \(not valid JSON.*{REEXPORT}"):
        load_bundle(root)


def test_manifest_json_but_not_an_object(grey_bundle, tmp_path):
    root = copy_bundle(grey_bundle[1], tmp_path)
    (root / MANIFEST).write_text("[1, 2, 3]")
    with pytest.raises(BundleError, match=r"is not a pixelrt bundle manifest \(format is not 'pixelrt-bundle'\)"):
        load_bundle(root)


def test_manifest_wrong_format(grey_bundle, tmp_path):
    root = copy_bundle(grey_bundle[1], tmp_path)
    m = read_manifest(root)
    m["format"] = "onnx-model-zoo"
    write_manifest_json(root, m)
    with pytest.raises(BundleError,
                       match=rf"not a pixelrt bundle manifest \(format is not 'pixelrt-bundle'\); {REEXPORT}"):
        load_bundle(root)


@pytest.mark.parametrize("version,match", [(3, "is 3"), (0, "is 0"), (1, "is 1"), ("2", "is '2'"), (None, "is missing")])
def test_manifest_wrong_format_version(grey_bundle, tmp_path, version, match):
    root = copy_bundle(grey_bundle[1], tmp_path)
    m = read_manifest(root)
    if version is None:
        del m["format_version"]
    else:
        m["format_version"] = version
    write_manifest_json(root, m)
    with pytest.raises(BundleError, match=rf"manifest\.json: format_version {re.escape(match)}"):
        load_bundle(root)


@pytest.mark.parametrize("key", ["image", "graphs", "files"])
def test_manifest_missing_key(grey_bundle, tmp_path, key):
    root = copy_bundle(grey_bundle[1], tmp_path)
    m = read_manifest(root)
    del m[key]
    write_manifest_json(root, m)
    with pytest.raises(BundleError, match=rf"manifest\.json: {key} is missing; {REEXPORT}"):
        load_bundle(root)


def test_manifest_malformed_image(grey_bundle, tmp_path):
    root = copy_bundle(grey_bundle[1], tmp_path)
    m = read_manifest(root)
    m["image"]["height"] = "five"
    write_manifest_json(root, m)
    with pytest.raises(BundleError, match=r'manifest\.json: image\.height must be an integer in 1\.\.4096, got "five"'):
        load_bundle(root)


def test_manifest_graphs_not_a_mapping(grey_bundle, tmp_path):
    root = copy_bundle(grey_bundle[1], tmp_path)
    m = read_manifest(root)
    m["graphs"] = ["full.onnx", "step.onnx"]
    write_manifest_json(root, m)
    with pytest.raises(BundleError, match=r"manifest\.json.*graphs"):
        load_bundle(root)


def test_manifest_file_entry_not_a_mapping(grey_bundle, tmp_path):
    root = copy_bundle(grey_bundle[1], tmp_path)
    m = read_manifest(root)
    m["files"]["step.onnx"] = m["files"]["step.onnx"]["sha256"]  # a bare string instead of {"sha256": ...}
    write_manifest_json(root, m)
    with pytest.raises(BundleError, match=r"manifest\.json.*step\.onnx"):
        load_bundle(root)


@pytest.mark.parametrize("name", ["step.onnx", "full.onnx", "reference.npz"])
def test_listed_file_deleted(grey_bundle, tmp_path, name):
    root = copy_bundle(grey_bundle[1], tmp_path)
    (root / name).unlink()
    with pytest.raises(BundleError, match=rf"manifest lists {re.escape(name)} but the file is missing.*{REEXPORT}"):
        load_bundle(root)


@pytest.mark.parametrize("name", ["step.onnx", "full.onnx", "reference.npz"])
def test_flipped_byte_is_a_checksum_mismatch(grey_bundle, tmp_path, name):
    root = copy_bundle(grey_bundle[1], tmp_path)
    flip_byte(root / name)
    with pytest.raises(BundleError,
                       match=rf"{re.escape(name)}: sha256 mismatch .*changed or truncated after export; {REEXPORT}"):
        load_bundle(root)
    # the structure is intact: only the checksum catches this
    Manifest.parse(read_document(root / MANIFEST, FORMAT, "bundle manifest", BundleError, "fix"))


def test_truncated_file_is_a_checksum_mismatch(grey_bundle, tmp_path):
    root = copy_bundle(grey_bundle[1], tmp_path)
    p = root / "full.onnx"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(BundleError, match=rf"full\.onnx: sha256 mismatch.*{REEXPORT}"):
        load_bundle(root)


@pytest.mark.parametrize("outside", ["../step.onnx", "sub/../../step.onnx", "ABS"])
def test_manifest_path_outside_bundle(grey_bundle, tmp_path, outside):
    root = copy_bundle(grey_bundle[1], tmp_path)
    # A real file with the right checksum sits outside: only the path check can stop it.
    shutil.copy(root / "step.onnx", tmp_path / "step.onnx")
    if outside == "ABS":
        outside = str(tmp_path / "step.onnx")
    m = read_manifest(root)
    m["files"][outside] = m["files"].pop("step.onnx")
    m["graphs"]["step"]["file"] = outside
    write_manifest_json(root, m)
    with pytest.raises(BundleError, match=rf"files\.{re.escape(outside)} is not a file inside the bundle"):
        load_bundle(root)


def test_graph_not_listed_in_files(grey_bundle, tmp_path):
    root = copy_bundle(grey_bundle[1], tmp_path)
    m = read_manifest(root)
    del m["files"]["step.onnx"]  # the graph would be loaded without a checksum
    write_manifest_json(root, m)
    with pytest.raises(BundleError, match=r"graphs\.step\.file names 'step\.onnx', which files does not list with its sha256"):
        load_bundle(root)


def test_graph_path_unknown_graph(grey_bundle):
    with pytest.raises(BundleError, match=r"has no 'row' graph \(it has: full, step, wave\)"):
        grey_bundle[1].graph_path("row")


def test_corrupt_reference_npz_after_checksum(grey_bundle, tmp_path):
    root = copy_bundle(grey_bundle[1], tmp_path)
    (root / "reference.npz").write_bytes(b"PK\x03\x04 not really a zip")
    rehash(root, "reference.npz")
    b = load_bundle(root)
    with pytest.raises(BundleError, match=rf"reference\.npz: cannot read reference data.*{REEXPORT}"):
        b.reference()


def test_failed_load_changes_nothing(grey_bundle, tmp_path):
    root = copy_bundle(grey_bundle[1], tmp_path)
    flip_byte(root / "step.onnx")
    before = file_digests(root)
    with pytest.raises(BundleError):
        load_bundle(root)
    assert file_digests(root) == before


# ---------------------------------------------------------------- graphs ONNX Runtime cannot load

@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty"])
def test_bad_graph_with_matching_checksum(grey_bundle, tmp_path, kind):
    root = copy_bundle(grey_bundle[1], tmp_path)
    p = root / "step.onnx"
    data = p.read_bytes()
    p.write_bytes({"truncated": data[: len(data) // 3],
                   "garbage": np.random.default_rng(0).bytes(4096),
                   "empty": b""}[kind])
    rehash(root, "step.onnx")
    b = load_bundle(root)  # the checksum passes: the damage is only visible to ONNX Runtime
    backend = OrtBackend(b.graph_path("step"))
    with pytest.raises(BundleError, match=rf"step\.onnx: ONNX Runtime cannot load this graph \(.*\); {REEXPORT}"):
        backend.activate()
    assert not backend.active and backend.session is None


def test_unknown_runtime_and_device(grey_bundle):
    path = grey_bundle[1].graph_path("step")
    with pytest.raises(PixelrtError, match=r"unknown runtime 'tpu'; choose one of: ort, ort-cuda, .*trt"):
        open_backend("tpu", path)
    with pytest.raises(PixelrtError, match=r"unknown ONNX Runtime device 'tpu'; choose one of cpu, cuda"):
        OrtBackend(path, device="tpu")
