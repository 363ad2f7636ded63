"""Helpers that copy and damage bundles for the error tests (never the shared fixtures)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from pixelrt.bundle import MANIFEST, sha256_file


def copy_bundle(bundle, tmp_path: Path) -> Path:
    dst = tmp_path / "b"
    shutil.copytree(bundle.root, dst)
    return dst


def read_manifest(root: Path) -> dict:
    return json.loads((root / MANIFEST).read_text())


def write_manifest_json(root: Path, manifest: dict) -> None:
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2))


def rehash(root: Path, *names: str) -> None:
    """Make the manifest's size and sha256 of ``names`` match the files again (a forger's recomputed sums)."""
    m = read_manifest(root)
    for name in names:
        m["files"][name]["sha256"] = sha256_file(root / name)
        m["files"][name]["bytes"] = (root / name).stat().st_size
    write_manifest_json(root, m)


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def file_digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


class MustNotRun:
    """A runner that fails the test if the step loop reaches the graph."""

    def infer(self, feeds, check=True):
        raise AssertionError("step_loop ran the graph although its input was invalid")


