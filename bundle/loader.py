"""Load a bundle directory: the manifest parsed strictly, every file contained and verified, the
parts (sub-bundles) loaded through the same rules.

One mechanism for composite bundles: a part is a folder named in ``parts``; its manifest and every
file it lists must also be listed, with the same sha256, in the top manifest, which is the one that
is verified. Nothing outside the top directory is ever opened.
"""
from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pixelrt.bundle.fields import MAX_DOCUMENT_BYTES, parse_document
from pixelrt.bundle.files import contained, read_verified, verify_file
from pixelrt.bundle.manifest import FORMAT, MANIFEST, REEXPORT, Manifest
from pixelrt.bundle.records import FileRecord, GraphSpec, ImageSpec
from pixelrt.bundle.state import StateSpec, StepSchedule
from pixelrt.errors import BundleError

MAX_REFERENCE_BYTES = 1 << 30


class GraphFile(os.PathLike):
    """A bundle graph: where it is, what the manifest says about it, and its verified bytes.

    It is path-like (``onnx.load``, ``Path(g)``), so code that wants a file still gets one; the
    runtime's backends read :meth:`read` instead, so the bytes they run are the bytes that were
    verified, and check the graph against ``spec`` and the bundle's identity."""

    def __init__(self, bundle: "Bundle", name: str):
        self.bundle, self.graph = bundle, name
        self.spec: GraphSpec = bundle.graphs[name]
        self.path = bundle.root / self.spec.file
        self.key = bundle.prefix + self.spec.file

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"GraphFile({self.path})"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def record(self) -> FileRecord:
        return self.bundle.top.manifest.files[self.key]

    def read(self) -> bytes:
        """The graph's bytes, checked again against the top manifest's size and sha256."""
        r = self.record
        return read_verified(self.bundle.top.root, self.key, r.sha256, r.bytes, BundleError, REEXPORT)


@dataclass
class Bundle:
    """A verified bundle directory. Construct with :func:`load_bundle`."""

    root: Path
    manifest: Manifest
    parts: dict = field(default_factory=dict)   # name -> Bundle (composite bundles)
    prefix: str = ""                            # this bundle's folder inside the top bundle, "" for the top
    parent: "Bundle | None" = None

    @property
    def top(self) -> "Bundle":
        return self if self.parent is None else self.parent.top

    @property
    def image(self) -> ImageSpec:
        return self.manifest.image

    @property
    def graphs(self) -> dict[str, GraphSpec]:
        return self.manifest.graphs

    @property
    def state(self) -> list[StateSpec]:
        return list(self.manifest.state)

    @property
    def family(self) -> str:
        return self.manifest.family

    @property
    def kind(self) -> str:
        return self.manifest.kind

    @property
    def precision(self) -> str:
        return self.manifest.precision

    @property
    def step_schedule(self) -> StepSchedule:
        if self.manifest.schedule is None:
            raise BundleError(f"{self.root} is a {self.kind} bundle: it has no step loop of its own")
        return self.manifest.schedule

    @property
    def context(self) -> tuple:
        """Per-image inputs (names) the graphs take besides the image, e.g. ("label",)."""
        return self.manifest.context

    def graph_path(self, name: str) -> GraphFile:
        if name not in self.graphs:
            raise BundleError(f"bundle {self.root} has no {name!r} graph (it has: {', '.join(self.graphs)}); {REEXPORT}")
        return GraphFile(self, name)

    def reference(self) -> dict[str, np.ndarray]:
        """The fixed batch and what PyTorch measured on it at export time, from verified bytes; the
        images are checked against the manifest's image and reference size."""
        ref = self.manifest.reference
        key = self.prefix + ref.file
        r = self.top.manifest.files[key]
        if r.bytes > MAX_REFERENCE_BYTES:
            raise BundleError(f"{self.root / ref.file} is {r.bytes} bytes, too large for a reference batch; {REEXPORT}")
        data = read_verified(self.top.root, key, r.sha256, r.bytes, BundleError, REEXPORT)
        try:  # an npz is a zip: refuse one that would expand beyond the bound before numpy reads it
            expands = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist())
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise BundleError(f"{self.root / ref.file}: cannot read reference data ({e}); {REEXPORT}") from None
        if expands > MAX_REFERENCE_BYTES:
            raise BundleError(f"{self.root / ref.file} would expand to {expands} bytes, more than a reference batch "
                              f"({MAX_REFERENCE_BYTES} at most); {REEXPORT}")
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as e:  # noqa: BLE001 - any parse failure is a corrupt file
            raise BundleError(f"{self.root / ref.file}: cannot read reference data ({e}); {REEXPORT}") from None
        x = arrays.get("x")
        if x is None or x.dtype != np.uint8 or x.shape != (ref.images, *self.image.shape) \
                or (x.size and int(x.max()) >= self.image.levels):
            raise BundleError(f"{self.root / ref.file}: its images 'x' are not {ref.images} uint8 images of "
                              f"{'x'.join(map(str, self.image.shape))} below {self.image.levels} levels, as the "
                              f"manifest says; {REEXPORT}")
        for k, v in arrays.items():
            if k != "x" and (v.dtype.kind not in "fiu" or (v.dtype.kind == "f" and not np.isfinite(v).all())
                             or len(v) != ref.images):
                raise BundleError(f"{self.root / ref.file}: array {k!r} is not {ref.images} finite numbers per "
                                  f"image; {REEXPORT}")
        return arrays


def _check_root(root: Path) -> None:
    if not root.exists():
        raise BundleError(f"bundle {root} does not exist; create it with `pixelrt export CKPT -o {root}/`")
    if not root.is_dir():
        raise BundleError(f"{root} is a file, not a bundle directory; pass the folder `pixelrt export` wrote")
    if not (root / MANIFEST).exists():
        raise BundleError(f"{root} has no {MANIFEST}, so it is not a pixelrt bundle; {REEXPORT}")


def _parse(data: bytes, where: Path) -> Manifest:
    f = parse_document(data, str(where), FORMAT, "bundle manifest", BundleError, REEXPORT)
    return Manifest.parse(f)


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Read and verify a bundle directory; raises BundleError naming the problem and the fix.

    The manifest is parsed field by field (``Manifest.parse``); every file it lists must be a
    regular file inside the directory with the listed size and sha256; each part is loaded the
    same way from bytes the top manifest verified."""
    root = Path(path)
    _check_root(root)
    mpath = contained(root, MANIFEST, BundleError, REEXPORT)
    try:
        with open(mpath, "rb") as f:
            data = f.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as e:
        raise BundleError(f"{root / MANIFEST} cannot be read ({e.strerror or e}); check its permissions") from None
    manifest = _parse(data, root / MANIFEST)
    for name, rec in manifest.files.items():
        verify_file(root, name, rec.sha256, rec.bytes, BundleError, REEXPORT)
    top = Bundle(root, manifest)
    _load_parts(top)
    return top


def _load_parts(bundle: Bundle) -> None:
    top = bundle.top
    for name, part in bundle.manifest.parts.items():
        prefix = f"{bundle.prefix}{part.dir}/"
        where = f"{top.root / MANIFEST}: parts.{name}"
        # listed: Manifest.check requires DIR/manifest.json in the files of the manifest naming the part, and
        # every file a part lists is in the top manifest's files (checked below, one level up)
        rec = top.manifest.files[f"{prefix}{MANIFEST}"]
        data = read_verified(top.root, f"{prefix}{MANIFEST}", rec.sha256, rec.bytes, BundleError, REEXPORT)
        sub = _parse(data, top.root / prefix / MANIFEST)
        for fname, frec in sub.files.items():
            listed = top.manifest.files.get(prefix + fname)
            if listed is None or (listed.sha256, listed.bytes) != (frec.sha256, frec.bytes):
                raise BundleError(f"{where}: {prefix}{fname} is listed by the part's manifest but not, with the same "
                                  f"sha256, by the top manifest, which is the one that is verified; {REEXPORT}")
        if sub.image != part.image:
            raise BundleError(f"{where}.image: the part holds {sub.image.channels}x{sub.image.height}x"
                              f"{sub.image.width} images of {sub.image.levels} levels, the manifest says "
                              f"{'x'.join(map(str, part.image.shape))}, {part.image.levels}; {REEXPORT}")
        if sub.context != ((part.context,) if part.context else ()):
            raise BundleError(f"{where}.context: the part's schedule takes {list(sub.context)}, the manifest says "
                              f"{part.context!r}; {REEXPORT}")
        child = Bundle(top.root / prefix, sub, prefix=prefix, parent=bundle)
        bundle.parts[name] = child
        _load_parts(child)


def sub_bundles(bundle: Bundle) -> list[tuple[str, Bundle]]:
    """The parts of a composite bundle as (folder, Bundle), depth first; [] for the others."""
    out = []
    for part in bundle.parts.values():
        out.append((part.prefix.rstrip("/"), part))
        out.extend(sub_bundles(part))
    return out
