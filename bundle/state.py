"""The step loop's records: the state tensors and how the host updates them, and the step schedule.

Split from :mod:`pixelrt.bundle.records` (same conventions: ``to_json``, a strict ``parse`` from a Field,
and ``from_json`` for a record on its own). Torch-free: numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pixelrt.bundle.fields import Field
from pixelrt.bundle.records import BATCH, MAX_CHANNELS, PIXELS, record_field, parse_shape

MAX_STATE_BYTES = 1 << 28  # one state tensor, per image


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
STATE_DTYPES = ("float32", "float16")


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

    @property
    def bytes_per_image(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * np.dtype(self.dtype).itemsize

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
        return cls.parse(record_field(d, "state"))

    @classmethod
    def parse(cls, f: Field) -> "StateSpec":
        f.obj(("name", "shape", "dtype", "init", "update"))
        u = f["update"]
        kind = u["kind"].str(tuple(STATE_UPDATES))
        keys = {"ring-row": ("rows", "pad"), "strided-ring-row": ("rows", "pad", "stride")}.get(kind, ())
        u.obj(("kind", "from_output", *keys))
        shape = parse_shape(f["shape"])
        if len(shape) < 1 or shape[0] != BATCH or BATCH in shape[1:] or 0 in shape[1:]:
            f["shape"].fail(f"must be [\"batch\", d1, ...] with positive static sizes, got {list(shape)}")
        if kind in RING_KINDS and len(shape) != 5:
            f["shape"].fail(f"of a {kind} state must be [\"batch\", layers, rows, width + 2*pad, channels], "
                            f"got {list(shape)}")
        spec = cls(f["name"].name(), shape, f["dtype"].str(STATE_DTYPES), f["init"].str(("zeros",)), kind,
                   u["from_output"].name(), u["rows"].int(1, 256) if "rows" in keys else 0,
                   u["pad"].int(0, 256) if "pad" in keys else 0, u["stride"].int(1, 64) if "stride" in keys else 1)
        if spec.bytes_per_image > MAX_STATE_BYTES:
            f["shape"].fail(f"is {spec.bytes_per_image} bytes per image, at most {MAX_STATE_BYTES} are allowed")
        if kind in RING_KINDS and shape[2] != spec.rows:
            f["shape"].fail(f"has {shape[2]} rows on axis 2 but update.rows is {spec.rows}")
        return spec


ORDERS = ("raster",)
COMMITS = ("after-last-substep",)
MAX_LAG = 4096


WAVE_LAYOUTS = {
    "batch-first": "the step graph's own ring states (batch, L, rows, W + 2*pad, C); per-pixel tensors (batch, "
                   "pixels, ...); each ring's new columns (batch, pixels, L, C)",
    "batch-last": "each ring state with the batch axis last, (L, rows, W + 2*pad, C, batch); per-pixel tensors "
                  "(pixels, batch, ...); each ring's new columns (L, C, pixels, batch): a window's taps of the "
                  "whole batch are then one contiguous block, and the batch is the columns of its GEMMs",
}


@dataclass(frozen=True)
class Wavefront:
    """Several pixels of each image per call (manifest ``schedule.wavefront``).

    ``graph`` (a key of the manifest's ``graphs``) is the step graph with per-pixel positions: its inputs
    ``rows``/``cols`` (pixels,) name the pixels in flight, which form a "pixels" axis beside the batch
    axis of ``pixel``, ``force``, ``noise``, ``value`` and ``logp``. Row i runs ``lag`` pixels behind row
    i - 1, so at call t the pixels (i, t - lag * i) are independent: W + lag * (H - 1) calls per sub-step
    instead of H * W.
    Sub-steps and commits are the raster schedule's, per pixel. ``layout`` (WAVE_LAYOUTS) is the order of
    the graph's axes; the ring slots and columns are the step graph's either way.
    """

    graph: str
    lag: int
    layout: str = "batch-first"

    def calls(self, height: int, width: int) -> int:
        return width + self.lag * (height - 1)

    def in_flight(self, t: int, height: int, width: int) -> tuple[int, int]:
        """Rows [lo, hi) in flight at call t; row i is at column t - lag * i."""
        return max(0, -(-(t - width + 1) // self.lag)), min(height - 1, t // self.lag) + 1

    @property
    def batch_last(self) -> bool:
        return self.layout == "batch-last"

    def per_pixel(self, *trailing) -> tuple:
        """The shape of a per-pixel input or output (pixel, force, noise, value, logp)."""
        return (PIXELS, BATCH, *trailing) if self.batch_last else (BATCH, PIXELS, *trailing)

    def state_shape(self, state: StateSpec) -> tuple:
        """A ring state as the wavefront graph takes it."""
        return (*state.shape[1:], BATCH) if self.batch_last else tuple(state.shape)

    def new_shape(self, state: StateSpec) -> tuple:
        """A ring state's new columns as the wavefront graph gives them, one per pixel in flight."""
        L, C = state.shape[1], state.shape[-1]
        return (L, C, PIXELS, BATCH) if self.batch_last else (BATCH, PIXELS, L, C)

    def allocate(self, state: StateSpec, batch: int) -> np.ndarray:
        shape = self.state_shape(state)
        return np.zeros(tuple(batch if d == BATCH else d for d in shape), dtype=state.dtype)

    def to_json(self) -> dict:
        return {"graph": self.graph, "lag": self.lag, "layout": self.layout}

    @classmethod
    def parse(cls, f: Field) -> "Wavefront":
        f.obj(("graph", "lag"), ("layout",))  # a bundle written before layouts existed is batch-first
        layout = f["layout"].str(tuple(WAVE_LAYOUTS)) if "layout" in f.value else "batch-first"
        return cls(f["graph"].name(), f["lag"].int(1, MAX_LAG), layout)


@dataclass(frozen=True)
class StepSchedule:
    """How the host drives the step graph (manifest ``schedule``).

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
    sampler: str = "inverse-cdf"
    order: str = "raster"
    commit: str = "after-last-substep"
    wavefront: Wavefront | None = None

    def channels_per_substep(self, channels: int) -> int:
        return channels // self.substeps_per_pixel

    @property
    def noise_channels(self) -> int:
        return self.substeps_per_pixel * self.noise_per_substep

    def to_json(self) -> dict:
        return {"order": self.order, "substeps_per_pixel": self.substeps_per_pixel,
                "noise_per_substep": self.noise_per_substep, "commit": self.commit, "sampler": self.sampler,
                "context": list(self.context), "row_graph": self.row_graph,
                "wavefront": None if self.wavefront is None else self.wavefront.to_json()}

    @classmethod
    def from_json(cls, d: dict, channels: int) -> "StepSchedule":
        """A schedule record on its own, checked against the image's channel count."""
        f = record_field(d, "schedule")
        s = cls.parse(f)
        if channels % s.substeps_per_pixel:
            f["substeps_per_pixel"].fail(f"({s.substeps_per_pixel}) must divide the {channels} channels")
        return s

    @classmethod
    def parse(cls, f: Field) -> "StepSchedule":
        f.obj(("order", "substeps_per_pixel", "noise_per_substep", "commit", "sampler", "context", "row_graph"),
              ("wavefront",))
        ctx = tuple(c.name() for c in f["context"].list(0, 16))
        row, wave = f.get("row_graph"), f.get("wavefront")
        return cls(f["substeps_per_pixel"].int(1, MAX_CHANNELS), f["noise_per_substep"].int(1, 1024), ctx,
                   row and row.name(), f["sampler"].str(max_len=256), f["order"].str(ORDERS),
                   f["commit"].str(COMMITS), wave and Wavefront.parse(wave))
