"""What `pip install pixelrt[...]` puts on a machine: every package folder, the data files, the metadata.

A real runtime-only install (no torch, no scikit-learn) is built in a fresh virtualenv and drives a bundle
from the command line: sample, eval on the shipped digits, verify, calibrate.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
META = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_installed():
    dirs = META["tool"]["setuptools"]["package-dir"]
    listed = set(META["tool"]["setuptools"]["packages"])
    found = set()
    for package, folder in dirs.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join([package, *rel]))
    assert found - listed == set(), f"package folders missing from pyproject.toml: {sorted(found - listed)}"
    data = META["tool"]["setuptools"]["package-data"]["pixelrt.assets"]
    assert {"*.npz", "*.txt"} <= set(data) and (ROOT / "pixelrt" / "assets" / "digits.npz").is_file()


def test_metadata_names_readme_licence_and_urls():
    project = META["project"]
    assert project["readme"] == "README.md" and project["license"] == "MIT"
    assert all((ROOT / f).is_file() for f in project["license-files"])
    assert {"Homepage", "Documentation", "Issues"} <= set(project["urls"])
    assert project["scripts"]["pixelrt"] == "pixelrt.cli:main"
    runtime = " ".join(project["optional-dependencies"]["runtime"])
    assert "torch" not in runtime and "scikit-learn" not in runtime


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory):
    """pip install 'pixelrt[calibrate]' (the runtime extra + onnx) into a fresh virtualenv: a real wheel build."""
    d = tmp_path_factory.mktemp("rt")
    venv.create(d / "venv", with_pip=True)
    py = d / "venv" / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{ROOT}[calibrate]"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return py


@pytest.fixture(scope="module")
def digits_bundle(tmp_path_factory):
    from tests.conftest import tiny_pixelcnn
    from pixelrt.bundle import ImageSpec
    from pixelrt.data import load_dataset
    from pixelrt.export import export_bundle

    x = load_dataset("digits").x[:4]
    out = tmp_path_factory.mktemp("digits") / "bundle"
    export_bundle(tiny_pixelcnn(1, 17), ImageSpec(1, 8, 8, 17), x, out, log=lambda s: None,
                  source={"data": {"spec": "digits", "test_fraction": 0.2, "split_seed": 0}})
    return out


def test_a_runtime_only_install_samples_evaluates_verifies_and_calibrates(runtime_venv, digits_bundle, tmp_path):
    py = str(runtime_venv)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    absent = subprocess.run([py, "-c", "import importlib.util as u; print([m for m in ('torch', 'sklearn') "
                             "if u.find_spec(m)])"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert absent.stdout.strip() == "[]", absent.stdout + absent.stderr

    def cli(*argv):
        r = subprocess.run([py, "-m", "pixelrt", *map(str, argv)], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=300)
        assert "Traceback" not in r.stderr
        return r

    r = cli("sample", digits_bundle, "-n", "4", "-o", tmp_path / "s.png", "--npz", tmp_path / "s.npz")
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "s.npz")["images"].shape == (4, 1, 8, 8)
    r = cli("eval", digits_bundle, "--data", "digits", "--json", "-")
    assert r.returncode == 0, r.stderr
    assert '"bits_per_dim"' in r.stdout
    r = cli("verify", digits_bundle)
    assert r.returncode == 0 and "checks within budget" in r.stdout, r.stdout + r.stderr
    r = cli("calibrate", digits_bundle, "--precision", "int8", "-o", tmp_path / "int8", "--heldout", "16",
            "--calib-images", "16", "--step-images", "2", "--method", "minmax")
    assert r.returncode == 0, r.stderr
    r = cli("verify", tmp_path / "int8")
    assert r.returncode == 0, r.stdout + r.stderr
    r = cli("train", "--data", "digits", "-o", tmp_path / "ckpt")  # needs torch: one line, exit 2
    assert r.returncode == 2 and "needs PyTorch" in r.stderr and "pixelrt[export]" in r.stderr
