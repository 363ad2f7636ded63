"""Write a manifest: stamp the bundle's identity into each graph, fill every file's size and sha256,
check the result with the same parser the loader uses, and write manifest.json atomically.

Used by export and calibration, which have ``onnx`` installed; the loader never needs it.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pixelrt.atomic import atomic_write_bytes
from pixelrt.bundle.fields import Field
from pixelrt.bundle.files import sha256_file
from pixelrt.bundle.identity import graph_identity
from pixelrt.bundle.manifest import MANIFEST, Manifest
from pixelrt.bundle.records import FileRecord
from pixelrt.errors import BundleError


def stamp_graph(path: Path, identity: dict[str, str]) -> None:
    """Write ``identity`` into the ONNX graph's ``metadata_props`` (other entries are kept)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    if all(props.get(k) == v for k, v in identity.items()):
        return
    props.update(identity)
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    atomic_write_bytes(path, model.SerializeToString())


def write_manifest(root: Path, manifest: Manifest) -> Manifest:
    """Stamp each graph, hash every listed file, validate and write ``root/manifest.json``; the final record."""
    root = Path(root)
    for name, g in manifest.graphs.items():
        stamp_graph(root / g.file, graph_identity(manifest, name))
    files = {name: FileRecord(sha256_file(root / name), (root / name).stat().st_size, rec.provenance)
             for name, rec in manifest.files.items()}
    manifest = dataclasses.replace(manifest, files=files)
    doc = manifest.to_json()
    # The writer's own output must pass the loader's parser: a malformed manifest is a pixelrt bug, caught here.
    Manifest.parse(Field(json.loads(json.dumps(doc)), "", str(root / MANIFEST), BundleError,
                         "this is a pixelrt bug: report it with the command that wrote the bundle"))
    atomic_write_bytes(root / MANIFEST, (json.dumps(doc, indent=2) + "\n").encode())
    return manifest


def pending(provenance: dict | None = None) -> FileRecord:
    """A file record whose size and sha256 :func:`write_manifest` fills in."""
    return FileRecord("0" * 64, 0, dict(provenance or {}))
