"""Bad inputs to calibration: one clear PixelrtError, and nothing written."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pixelrt.calibration.calibrate import calibrate_bundle
from pixelrt.errors import BundleError, DataError, PixelrtError
from tests.runtime.bundle_edits import copy_bundle, read_manifest, write_manifest_json

from .conftest import images


def _nothing_written(out):
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.*"))  # no temporary sibling left behind


def test_empty_calibration_set(grey_bundle, tmp_path):
    _, b = grey_bundle
    out = tmp_path / "int8"
    with pytest.raises(DataError, match="calibration set is empty"):
        calibrate_bundle(b.root, out, "int8", images(b, 4, 0), calib_x=images(b, 0, 0), log=lambda s: None)
    _nothing_written(out)


def test_empty_heldout_set(grey_bundle, tmp_path):
    _, b = grey_bundle
    out = tmp_path / "fp16"
    with pytest.raises(DataError, match="held-out set is empty"):
        calibrate_bundle(b.root, out, "fp16", images(b, 0, 0), log=lambda s: None)
    _nothing_written(out)


def test_wrong_shaped_calibration_data(grey_bundle, tmp_path):
    _, b = grey_bundle
    out = tmp_path / "int8"
    bad = np.zeros((4, 1, 8, 8), np.uint8)
    with pytest.raises(DataError, match=r"calibration data: images are 1x8x8 .* exported for 1x5x6"):
        calibrate_bundle(b.root, out, "int8", images(b, 4, 0), calib_x=bad, log=lambda s: None)
    _nothing_written(out)


def test_out_of_range_values(grey_bundle, tmp_path):
    _, b = grey_bundle
    out = tmp_path / "int8"
    bad = np.full((4, 1, 5, 6), 200, np.uint8)
    with pytest.raises(DataError):
        calibrate_bundle(b.root, out, "int8", images(b, 4, 0), calib_x=bad, log=lambda s: None)
    _nothing_written(out)


def test_bundle_without_step_graph(grey_bundle, tmp_path):
    _, b = grey_bundle
    root = copy_bundle(b, tmp_path)
    m = read_manifest(root)
    del m["graphs"]["step"]
    write_manifest_json(root, m)
    out = tmp_path / "int8"
    with pytest.raises(BundleError, match=r"graphs\.step is missing \(a autoregressive bundle has graphs full, step\)"):
        calibrate_bundle(root, out, "int8", images(b, 4, 0), calib_x=images(b, 4, 1), log=lambda s: None)
    _nothing_written(out)


def test_latent_variable_bundles_are_refused_by_kind(vae_grey_bundle, pixelvae_bundle, tmp_path):
    for _, b in (vae_grey_bundle, pixelvae_bundle):
        out = tmp_path / b.kind
        with pytest.raises(BundleError, match=f"is a {b.kind} bundle .*single autoregressive bundles"):
            calibrate_bundle(b.root, out, "fp16", b.reference()["x"], log=lambda s: None)
        _nothing_written(out)


def test_reduced_bundle_cannot_be_calibrated_again(grey_fp16, tmp_path):
    _, b, res = grey_fp16
    out = tmp_path / "again"
    with pytest.raises(BundleError, match="already a fp16 bundle"):
        calibrate_bundle(res.bundle.root, out, "int8", images(b, 4, 0), calib_x=images(b, 4, 1), log=lambda s: None)
    _nothing_written(out)


def test_existing_output_needs_force(grey_bundle, tmp_path):
    _, b = grey_bundle
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(PixelrtError, match="already exists; .* --force"):
        calibrate_bundle(b.root, out, "fp16", images(b, 4, 0), log=lambda s: None)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_cli_error_is_one_line_and_writes_nothing(grey_bundle, tmp_path):
    _, b = grey_bundle
    out = tmp_path / "x"
    proc = subprocess.run([sys.executable, "-m", "pixelrt.cli", "calibrate", str(b.root), "--precision", "int8",
                           "--data", str(tmp_path / "nope.npz"), "-o", str(out)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pixelrt calibrate: error: ") and "nope.npz" in lines[0]
    _nothing_written(out)
