"""Writes are atomic: a bundle appears whole or not at all, and a failed write leaves the old one untouched."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import pixelrt.export.exporter as exporter
from pixelrt.atomic import atomic_directory
from pixelrt.errors import ParityError, PixelrtError
from pixelrt.export import export_bundle
from pixelrt.bundle import load_bundle, sha256_file


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _hidden(parent: Path, name: str) -> list[str]:
    """Leftover temporary siblings (.NAME.tmp-*, .NAME.old-*) of ``parent/name``."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def _pixelrt_folder(target: Path, name: str = "old.txt", text: str = "old") -> None:
    """A folder pixelrt recognises as its own output (a checkpoint marker), the only kind --force replaces."""
    target.mkdir(parents=True)
    (target / "checkpoint.json").write_text('{"format": "pixelrt-checkpoint"}')
    (target / name).write_text(text)


def _export_args(grey_bundle):
    model, bundle = grey_bundle
    return model, bundle.image, bundle.reference()["x"]


# ---------------------------------------------------------------- export_bundle

def test_export_refuses_existing_path(grey_bundle, tmp_path):
    target = tmp_path / "b"
    shutil.copytree(grey_bundle[1].root, target)
    before = _tree(target)
    model, image, x = _export_args(grey_bundle)
    with pytest.raises(PixelrtError, match=r"already exists; choose another path or pass --force"):
        export_bundle(model, image, x, target, log=lambda s: None)
    assert _tree(target) == before
    assert _hidden(tmp_path, "b") == []
    load_bundle(target)


def test_export_refuses_existing_file(grey_bundle, tmp_path):
    target = tmp_path / "b"
    target.write_text("precious")
    model, image, x = _export_args(grey_bundle)
    with pytest.raises(PixelrtError, match=r"already exists"):
        export_bundle(model, image, x, target, log=lambda s: None)
    with pytest.raises(PixelrtError, match=r"already exists and is not a folder; choose another path"):
        export_bundle(model, image, x, target, overwrite=True, log=lambda s: None)
    assert target.read_text() == "precious"
    assert _hidden(tmp_path, "b") == []


@pytest.fixture
def failing_validation(monkeypatch):
    """Make export fail after both graphs, the reference and the manifest are written."""
    seen = {}

    def fail(spec, bundle, x, context):
        seen["root"] = bundle.root
        seen["files"] = sorted(p.name for p in bundle.root.iterdir())
        raise ParityError("export validation failed (injected by the test)")

    monkeypatch.setattr(exporter, "check_graphs", fail)
    return seen


def _check_failed_midway(seen: dict, target: Path) -> None:
    # the failure really came mid-way: in a hidden sibling, with everything but the validation written
    assert seen["root"].parent == target.parent and seen["root"].name.startswith(f".{target.name}.tmp-")
    assert seen["files"] == ["full.onnx", "manifest.json", "reference.npz", "step.onnx", "wave.onnx"]
    assert not seen["root"].exists()
    assert _hidden(target.parent, target.name) == []


def test_export_failure_leaves_nothing(grey_bundle, tmp_path, failing_validation):
    target = tmp_path / "out" / "bundle"
    model, image, x = _export_args(grey_bundle)
    with pytest.raises(ParityError, match=r"injected by the test"):
        export_bundle(model, image, x, target, log=lambda s: None)
    assert not target.exists()
    _check_failed_midway(failing_validation, target)
    assert list(target.parent.iterdir()) == []


def test_export_failure_with_overwrite_keeps_old_bundle(grey_bundle, tmp_path, failing_validation):
    target = tmp_path / "bundle"
    shutil.copytree(grey_bundle[1].root, target)
    before = _tree(target)
    model, image, x = _export_args(grey_bundle)
    with pytest.raises(ParityError, match=r"injected by the test"):
        export_bundle(model, image, x, target, overwrite=True, log=lambda s: None)
    _check_failed_midway(failing_validation, target)
    assert _tree(target) == before
    old = load_bundle(target)  # verifies every checksum
    assert old.manifest == grey_bundle[1].manifest


# ---------------------------------------------------------------- atomic_directory

def test_atomic_directory_success_renames(tmp_path):
    target = tmp_path / "deep" / "t"
    with atomic_directory(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".t.tmp-") and tmp.is_dir()
        assert not target.exists()  # nothing visible until the block succeeds
        (tmp / "a.txt").write_text("new")
    assert (target / "a.txt").read_text() == "new"
    assert not tmp.exists()
    assert _hidden(target.parent, "t") == []


def test_atomic_directory_overwrite_replaces(tmp_path):
    target = tmp_path / "t"
    _pixelrt_folder(target)
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
        assert (target / "old.txt").read_text() == "old"  # old version intact while writing
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert _hidden(tmp_path, "t") == []


def test_atomic_directory_exception_cleans_up(tmp_path):
    target = tmp_path / "t"
    with pytest.raises(ValueError, match="boom"):
        with atomic_directory(target) as tmp:
            (tmp / "half.txt").write_text("half")
            raise ValueError("boom")
    assert not target.exists() and not tmp.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_exception_keeps_old(tmp_path):
    target = tmp_path / "t"
    _pixelrt_folder(target)
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(target, overwrite=True) as tmp:
            (tmp / "old.txt").write_text("half-written")
            raise KeyboardInterrupt
    assert sorted(p.name for p in target.iterdir()) == ["checkpoint.json", "old.txt"]
    assert (target / "old.txt").read_text() == "old"
    assert _hidden(tmp_path, "t") == []


def test_atomic_directory_refuses_existing(tmp_path):
    target = tmp_path / "t"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    with pytest.raises(PixelrtError, match=r"t already exists; choose another path or pass --force"):
        with atomic_directory(target):
            pytest.fail("the block must not run")
    assert (target / "keep.txt").read_text() == "keep"
    assert _hidden(tmp_path, "t") == []


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_atomic_directory_failed_swap_restores_old(tmp_path, monkeypatch, exchange):
    import pixelrt.atomic as atomic

    target = tmp_path / "t"
    _pixelrt_folder(target)
    real_rename = os.rename

    def rename(src, dst):
        if Path(src).name.startswith(".t.tmp-"):
            raise OSError(28, "No space left on device (injected)")
        return real_rename(src, dst)

    def failing_exchange(a, b):
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(atomic, "_exchange", failing_exchange if exchange else (lambda a, b: False))
    with pytest.raises(OSError, match="injected"):
        with atomic_directory(target, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
    monkeypatch.undo()
    assert target.is_dir(), f"old version lost; left behind: {_hidden(tmp_path, 't')}"
    assert (target / "old.txt").read_text() == "old"
    assert _hidden(tmp_path, "t") == []


def test_reference_images_of_the_wrong_shape_or_range_write_nothing(tmp_path):
    from pixelrt.errors import DataError
    from pixelrt.bundle import ImageSpec
    from tests.conftest import tiny_pixelcnn

    model = tiny_pixelcnn(1, 4)
    image = ImageSpec(1, 4, 4, 4)
    with pytest.raises(DataError, match="1x5x5 but the model's checkpoint is for 1x4x4"):
        export_bundle(model, image, np.zeros((3, 1, 5, 5), np.uint8), tmp_path / "a", log=lambda s: None)
    with pytest.raises(DataError, match="levels"):
        export_bundle(model, image, np.full((3, 1, 4, 4), 9, np.uint8), tmp_path / "b", log=lambda s: None)
    assert list(tmp_path.iterdir()) == []
