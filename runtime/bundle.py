"""The bundle: the deployable unit. A directory with manifest.json, ONNX graphs and checksums.

This module is the single definition of the manifest format: export/ writes
through :func:`write_manifest` and the runtime reads through :func:`load_bundle`.
Loading never executes code from the bundle: the manifest is JSON, graphs are
ONNX protobuf, reference data is an npz read with ``allow_pickle=False``, and
every file is checked against its sha256 before it is used.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pixelrt.documents import read_json_document
from pixelrt.data import check_images
from pixelrt.errors import BundleError, DataError

FORMAT = "pixelrt-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REEXPORT = "re-run `pixelrt export CKPT -o BUNDLE/`"
# Bundle kinds (manifest key ``kind``; absent means autoregressive) and the graphs each must have.
KINDS = {"autoregressive": (), "vae": ("encoder", "decoder"), "multiscale": ("cond",),  # multiscale: runtime/multiscale.py
         "pixelvae": ("encoder", "features")}  # pixelvae: runtime/pixelvae.py


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class ImageSpec:
    channels: int
    height: int
    width: int
    levels: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def dims(self) -> int:
        return self.channels * self.height * self.width

    def check_images(self, x: np.ndarray, source: str, mismatch: str) -> np.ndarray:
        """Images of this spec as uint8, or DataError: ``mismatch`` words a shape mismatch
        (with ``{got}`` and ``{want}`` as CxHxW); levels and rank use the data module's checks."""
        x = np.asarray(x)
        if x.ndim == 4 and tuple(x.shape[1:]) != self.shape:
            raise DataError(mismatch.format(got="x".join(map(str, x.shape[1:])), want="x".join(map(str, self.shape))))
        return check_images(x, self.levels, source)

    def bits_per_dim(self, loglik_nats: np.ndarray) -> np.ndarray:
        """Per-image bits per sub-pixel from per-image log-likelihood in nats."""
        return -np.asarray(loglik_nats, dtype=np.float64) / (self.dims * math.log(2.0))


STATE_UPDATES = {
    "ring-row": "after a pixel's last sub-step, write output `from_output` (B, L, C) at "
                "[:, :, (row + pad) % rows, col + pad, :] of a (batch, L, rows, W + 2*pad, C) ring buffer",
    "replace": "after a pixel's last sub-step, replace the whole state by output `from_output`",
    "row": "after each finished row, replace the state by the per-row graph's output `from_output`",
    "strided-ring-row": "a ring-row state of a coarser resolution: only after pixels with row % stride == "
                        "col % stride == 0, write `from_output` (B, L, C) at [:, :, (row // stride + pad) % rows, "
                        "col // stride + pad, :] of a (batch, L, rows, W // stride + 2*pad, C) ring buffer",
}
RING_KINDS = ("ring-row", "strided-ring-row")


@dataclass(frozen=True)
class StateSpec:
    """One state tensor of the step loop: how to allocate it and how the host updates it (STATE_UPDATES)."""

    name: str
    shape: tuple  # ("batch", ...); ring-row: ("batch", L, rows, W + 2*pad, C), L stacked layers, channels last
    dtype: str
    init: str           # "zeros"
    update: str         # a key of STATE_UPDATES
    source: str         # output (of the step graph, or the row graph for "row") that carries the new value
    rows: int = 0       # ring-row only
    pad: int = 0        # ring-row only
    stride: int = 1     # strided-ring-row only: the resolution's step in image pixels

    def allocate(self, batch: int) -> np.ndarray:
        return np.zeros((batch, *self.shape[1:]), dtype=self.dtype)

    def to_json(self) -> dict:
        update = {"kind": self.update, "from_output": self.source}
        if self.update in RING_KINDS:
            update.update(rows=self.rows, pad=self.pad)
        if self.update == "strided-ring-row":
            update.update(stride=self.stride)
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "init": self.init,
                "update": update}

    @classmethod
    def from_json(cls, d: dict) -> "StateSpec":
        u = d["update"]
        kind = u["kind"]
        ring = kind in RING_KINDS
        spec = cls(d["name"], tuple(d["shape"]), d["dtype"], d["init"], kind, u["from_output"],
                   int(u["rows"]) if ring else 0, int(u["pad"]) if ring else 0,
                   int(u["stride"]) if kind == "strided-ring-row" else 1)
        if spec.stride < 1 or (ring and spec.rows < 1):
            raise ValueError(f"state {spec.name!r}: stride {spec.stride} and rows {spec.rows} must be at least 1")
        if kind not in STATE_UPDATES or spec.init != "zeros" or (ring and len(spec.shape) != 5) or len(spec.shape) < 1:
            raise ValueError(f"state {spec.name!r}: this pixelrt drives zero-initialised states updated as "
                             f"{', '.join(STATE_UPDATES)} (ring-row shaped (batch, L, rows, W + 2*pad, C)), "
                             f"not {kind!r} {list(spec.shape)}")
        np.dtype(spec.dtype)  # raises TypeError on an unknown dtype name
        return spec


@dataclass(frozen=True)
class StepSchedule:
    """How the host drives the step graph (manifest ``schedule``); defaults describe a PixelCNN bundle.

    substeps_per_pixel S: graph calls per pixel (C: one channel per call; 1: the whole pixel at once).
    noise_per_substep K: uniforms each call consumes; a loop's noise is (N, S*K, H, W).
    context: per-image inputs (e.g. a class label) fed unchanged to every call and to the full graph.
    row_graph: a graph (key of the manifest's ``graphs``) run once after each finished row; it
    updates the ``row`` states.
    """

    substeps_per_pixel: int
    noise_per_substep: int = 1
    context: tuple = ()
    row_graph: str | None = None

    def channels_per_substep(self, channels: int) -> int:
        return channels // self.substeps_per_pixel

    @property
    def noise_channels(self) -> int:
        return self.substeps_per_pixel * self.noise_per_substep

    def to_json(self) -> dict:
        return {"substeps_per_pixel": self.substeps_per_pixel, "noise_per_substep": self.noise_per_substep,
                "context": list(self.context), "row_graph": self.row_graph}

    @classmethod
    def from_json(cls, d: dict | None, channels: int) -> "StepSchedule":
        d = d or {}
        sched = cls(int(d.get("substeps_per_pixel", channels)), int(d.get("noise_per_substep", 1)),
                    tuple(d.get("context") or ()), d.get("row_graph"))
        if sched.substeps_per_pixel < 1 or channels % sched.substeps_per_pixel or sched.noise_per_substep < 1:
            raise ValueError(f"schedule: {sched.substeps_per_pixel} sub-steps per pixel with {sched.noise_per_substep} "
                             f"uniforms each does not fit {channels} channels")
        return sched


@dataclass(frozen=True)
class GraphSpec:
    file: str
    inputs: list
    outputs: list

    def input_names(self) -> list[str]:
        return [i["name"] for i in self.inputs]

    def output_names(self) -> list[str]:
        return [o["name"] for o in self.outputs]


@dataclass
class Bundle:
    """A verified bundle directory. Construct with :func:`load_bundle`."""

    root: Path
    manifest: dict
    image: ImageSpec
    graphs: dict[str, GraphSpec]
    state: list[StateSpec] = field(default_factory=list)

    @property
    def family(self) -> str:
        return self.manifest["family"]

    @property
    def kind(self) -> str:
        """Bundle kind: autoregressive (full + step graphs, the step loop) or vae (encoder + decoder graphs)."""
        return self.manifest.get("kind", "autoregressive")

    @property
    def precision(self) -> str:
        return self.manifest.get("precision", "fp32")

    @property
    def schedule(self) -> dict:
        return self.manifest["schedule"]

    @property
    def step_schedule(self) -> StepSchedule:
        return StepSchedule.from_json(self.manifest.get("schedule"), self.image.channels)

    @property
    def context(self) -> tuple:
        """Per-image inputs (names) the graphs take besides the image, e.g. ("label",)."""
        return self.step_schedule.context

    def graph_path(self, name: str) -> Path:
        if name not in self.graphs:
            raise BundleError(f"bundle {self.root} has no {name!r} graph (it has: {', '.join(self.graphs)}); {REEXPORT}")
        return self.root / self.graphs[name].file

    def reference(self) -> dict[str, np.ndarray]:
        """The fixed batch and its log-likelihoods measured at export time."""
        ref = self.manifest["reference"]
        try:
            with np.load(self.root / ref["file"], allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception as e:  # noqa: BLE001 - any parse failure is a corrupt file
            raise BundleError(f"{self.root / ref['file']}: cannot read reference data ({e}); {REEXPORT}") from None


def _read_manifest(root: Path) -> dict:
    if not root.exists():
        raise BundleError(f"bundle {root} does not exist; create it with `pixelrt export CKPT -o {root}/`")
    if not root.is_dir():
        raise BundleError(f"{root} is a file, not a bundle directory; pass the folder `pixelrt export` wrote")
    path = root / MANIFEST
    if not path.exists():
        raise BundleError(f"{root} has no {MANIFEST}, so it is not a pixelrt bundle; {REEXPORT}")
    manifest = read_json_document(path, FORMAT, "bundle manifest", BundleError, REEXPORT)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{path} has format version {manifest.get('format_version')!r}; this pixelrt reads version "
            f"{FORMAT_VERSION}; {REEXPORT} with this version of pixelrt"
        )
    return manifest


def _verify_files(root: Path, manifest: dict) -> None:
    for name, meta in manifest.get("files", {}).items():
        path = root / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(f"{root / MANIFEST} lists a file outside the bundle ({name!r}); {REEXPORT}")
        if not path.is_file():
            raise BundleError(f"bundle manifest lists {name} but the file is missing from {root}; {REEXPORT}")
        digest = sha256_file(path)
        if digest != meta.get("sha256"):
            raise BundleError(
                f"{path}: sha256 mismatch (manifest {str(meta.get('sha256'))[:12]}..., file {digest[:12]}...); "
                f"the file was changed or truncated after export; {REEXPORT}"
            )


def load_bundle(path: str | os.PathLike, verify: bool = True) -> Bundle:
    """Read and verify a bundle directory; raises BundleError naming the problem and the fix."""
    root = Path(path)
    manifest = _read_manifest(root)
    where = root / MANIFEST

    def section(key: str, kind: type = dict):
        value = manifest.get(key)
        if not isinstance(value, kind):
            raise BundleError(f"{where} is missing or has a malformed entry {key!r} (expected a {kind.__name__}); {REEXPORT}")
        return value

    files = section("files")
    for name, meta in files.items():
        if not isinstance(meta, dict):
            raise BundleError(f"{where} is missing or has a malformed entry files[{name!r}] (expected a record "
                              f"with its sha256); {REEXPORT}")
    try:
        img = section("image")
        image = ImageSpec(int(img["channels"]), int(img["height"]), int(img["width"]), int(img["levels"]))
        graphs = {k: GraphSpec(g["file"], g["inputs"], g["outputs"]) for k, g in section("graphs").items()}
        state = [StateSpec.from_json(s) for s in manifest.get("state", [])]
        sched = StepSchedule.from_json(manifest.get("schedule"), image.channels)
        if sched.row_graph is not None and sched.row_graph not in graphs:
            raise KeyError(f"graphs[{sched.row_graph!r}] (the schedule's row graph)")
        if any(s.update == "row" for s in state) and sched.row_graph is None:
            raise ValueError("schedule.row_graph: 'row' states need a per-row graph")
        for needed in [g.file for g in graphs.values()] + [section("reference")["file"]]:
            if needed not in files:
                raise KeyError(f"files[{needed!r}]")
        str(section("head")["kind"])
        kind = manifest.get("kind", "autoregressive")
        if kind not in KINDS:
            raise ValueError(f"'kind' ({kind!r}; this pixelrt reads {', '.join(KINDS)} bundles)")
        for needed in KINDS[kind]:
            if needed not in graphs:
                raise KeyError(f"graphs[{needed!r}]")
        if kind in ("vae", "pixelvae") and int(section("latent")["size"]) < 1:
            raise ValueError("latent.size (must be at least 1)")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise BundleError(f"{where} is missing or has a malformed entry {e}; {REEXPORT}") from None
    if verify:
        _verify_files(root, manifest)
    return Bundle(root, manifest, image, graphs, state)


def sub_bundles(bundle: Bundle) -> list[tuple[str, Bundle]]:
    """The bundles a composite bundle holds, as (folder, Bundle): a multi-scale bundle's two stages, a
    PixelVAE's conditioned PixelCNN; [] for the others. Their files are covered by the top manifest's
    sha256s, so they load without a second check."""
    m = bundle.manifest
    try:
        if bundle.kind == "multiscale":
            dirs = [m["stages"][k]["dir"] for k in ("stage1", "stage2")]
        elif bundle.kind == "pixelvae":
            dirs = [m["decoder"]["dir"]]
        else:
            dirs = []
    except (KeyError, TypeError) as e:
        raise BundleError(f"{bundle.root / MANIFEST} is missing or has a malformed entry {e}; {REEXPORT}") from None
    return [(d, load_bundle(bundle.root / d, verify=False)) for d in dirs]


def write_manifest(root: Path, manifest: dict) -> None:
    """Fill ``files`` with the sha256 and size of every listed file, then write manifest.json."""
    for name, meta in manifest["files"].items():
        meta["sha256"] = sha256_file(root / name)
        meta["bytes"] = (root / name).stat().st_size
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
