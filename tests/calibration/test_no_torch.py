"""`pixelrt calibrate` runs on a torch-free install (calibration/ never imports torch)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from pixelrt.bundle import load_bundle
from tests.runtime.test_no_torch import _env, _forbidden, _modules


def test_cli_calibrate_without_torch(grey_bundle, tmp_path):
    _, b = grey_bundle
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(0).integers(0, 7, (40, 1, 5, 6)).astype(np.uint8))
    out = tmp_path / "int8"
    proc = subprocess.run([sys.executable, "-m", "pixelrt.cli", "calibrate", str(b.root), "--precision", "int8",
                           "--method", "minmax", "--data", str(data), "--levels", "7", "--step-images", "4",
                           "--step-feeds", "16", "-o", str(out), "--no-progress"],
                          capture_output=True, text=True, env=_env(tmp_path, sitecustomize=True), cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "int8 bundle written" in proc.stdout and "held-out bits/dim: fp32" in proc.stdout
    assert _forbidden(_modules(tmp_path)["modules"]) == []
    new = load_bundle(out)
    assert new.precision == "int8" and new.manifest.calibration["calibration_set"]["images"] == 32
