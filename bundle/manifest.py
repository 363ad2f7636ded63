"""The bundle manifest as one typed record, and the checks that span its records.

:meth:`Manifest.parse` reads every field of an untrusted ``manifest.json`` through
:class:`~pixelrt.bundle.fields.Field`, so each failure is one :class:`BundleError` naming the
field by its path (``state[3].shape``, ``parts.stage1.dir``) and the fix. The kind table
:data:`KINDS` says which graphs, parts and sections each bundle kind has; nothing else in
pixelrt decides that again. Writers build a :class:`Manifest` and serialise it with
:meth:`Manifest.to_json`; no code builds or reads a manifest dict.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Callable

from pixelrt.bundle.fields import Field
from pixelrt.bundle.graphs import WAVE_INPUTS
from pixelrt.bundle.records import (BATCH, PIXELS, ConditioningSpec, FileRecord, GraphSpec, HeadSpec, ImageSpec, LatentSpec,
                                    PartSpec, ReferenceSpec, TensorSpec)
from pixelrt.bundle.state import RING_KINDS, StateSpec, StepSchedule

FORMAT = "pixelrt-bundle"
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
REEXPORT = "re-run `pixelrt export CKPT -o BUNDLE/`"
PRECISIONS = ("fp32", "fp16", "int8")
MAX_STATE_TOTAL = 1 << 30  # all state tensors of one image, bytes
FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")


@dataclass(frozen=True)
class Kind:
    """What a bundle kind holds: its graphs, its sub-bundles (parts), and its sections."""

    graphs: tuple
    parts: tuple = ()
    schedule: bool = False
    latent: bool = False
    check: Callable | None = None  # kind-specific consistency (Manifest, Field) -> None


def _check_autoregressive(m: "Manifest", f: Field) -> None:
    C, H, W = m.image.shape
    img = (BATCH, C, H, W)
    full, step = m.graphs["full"], m.graphs["step"]
    _expect_io(f, "graphs.full", full, "inputs", TensorSpec("x", "uint8", img))
    _expect_io(f, "graphs.full", full, "outputs", TensorSpec("loglik", "float32", (BATCH,)))
    _expect_io(f, "graphs.full", full, "outputs", TensorSpec("logp", "float32", img))
    s = m.schedule
    cps = s.channels_per_substep(C)
    _expect_io(f, "graphs.step", step, "inputs",
               TensorSpec("noise", "float32", (BATCH,) if s.noise_per_substep == 1 else (BATCH, s.noise_per_substep)))
    _expect_io(f, "graphs.step", step, "outputs", TensorSpec("value", "int64", (BATCH,) if cps == 1 else (BATCH, cps)))
    for name in s.context:
        for g in ("full", "step"):
            if m.graphs[g].input(name) is None:
                f["graphs"][g]["inputs"].fail(f"lacks the schedule's context input {name!r}")


def _check_latent(m: "Manifest", f: Field) -> None:
    C, H, W = m.image.shape
    _expect_io(f, "graphs.encoder", m.graphs["encoder"], "inputs", TensorSpec("x", "uint8", (BATCH, C, H, W)))
    _expect_io(f, "graphs.encoder", m.graphs["encoder"], "outputs", TensorSpec("mu", "float32", (BATCH, m.latent.size)))
    z = TensorSpec("z", "float32", (BATCH, m.latent.size))
    _expect_io(f, f"graphs.{m.kind_rule.graphs[1]}", m.graphs[m.kind_rule.graphs[1]], "inputs", z)


def _check_pixelvae(m: "Manifest", f: Field) -> None:
    _check_latent(m, f)
    part = m.parts["pixelcnn"]
    out = m.graphs["features"].outputs[0]
    if part.context is None or out.name != part.context:
        f["parts"]["pixelcnn"]["context"].fail(f"must name the features graph's output {out.name!r}")
    if part.image != m.image:
        f["parts"]["pixelcnn"]["image"].fail("must equal the bundle's image")


def _check_multiscale(m: "Manifest", f: Field) -> None:
    C, H, W = m.image.shape
    if H % 2 or W % 2:
        f["image"].fail(f"of a multi-scale bundle needs even sides, got {H}x{W}")
    coarse = ImageSpec(C, H // 2, W // 2, m.image.levels)
    if m.parts["stage1"].image != coarse:
        f["parts"]["stage1"]["image"].fail(f"must be the coarse image {C}x{H // 2}x{W // 2}, {m.image.levels} levels")
    if m.parts["stage2"].image != m.image or m.parts["stage2"].context is None:
        f["parts"]["stage2"].fail("must hold the bundle's image and name its context (the bias field)")
    _expect_io(f, "graphs.cond", m.graphs["cond"], "inputs", TensorSpec("coarse", "uint8", (BATCH, *coarse.shape)))
    bias = m.graphs["cond"].output(m.parts["stage2"].context)
    if bias is None:
        f["graphs"]["cond"]["outputs"].fail(f"lacks stage 2's context {m.parts['stage2'].context!r}")


KINDS = {
    "autoregressive": Kind(("full", "step"), schedule=True, check=_check_autoregressive),
    "vae": Kind(("encoder", "decoder"), latent=True, check=_check_latent),
    "multiscale": Kind(("cond",), parts=("stage1", "stage2"), check=_check_multiscale),
    "pixelvae": Kind(("encoder", "features"), parts=("pixelcnn",), latent=True, check=_check_pixelvae),
}


def _expect_io(f: Field, where: str, g: GraphSpec, side: str, want: TensorSpec) -> None:
    got = (g.input if side == "inputs" else g.output)(want.name)
    node = f
    for part in where.split("."):
        node = node[part]
    if got is None:
        node[side].fail(f"lacks {want.name!r} ({want.dtype} {list(want.shape)})")
    if (got.dtype, tuple(got.shape)) != (want.dtype, tuple(want.shape)):
        node[side].fail(f"declares {want.name!r} as {got.dtype} {list(got.shape)}; the image and schedule imply "
                        f"{want.dtype} {list(want.shape)}")


def check_file_name(f: Field, name: str) -> None:
    """A file name in the manifest: a relative path of plain components, inside the bundle by spelling."""
    p = PurePosixPath(name)
    if not name or "\\" in name or p.is_absolute() or any(not FILE_NAME.fullmatch(c) for c in p.parts) \
            or len(p.parts) > 4:
        f.child(name, None).fail("is not a file inside the bundle (names are relative paths of at most 4 plain "
                                 "components: letters, digits, '_', '-', '.', never '..', '/' first or a backslash)")


@dataclass(frozen=True)
class Manifest:
    kind: str
    family: str
    image: ImageSpec
    head: HeadSpec
    graphs: dict            # name -> GraphSpec
    files: dict             # name -> FileRecord (empty records while a writer is still filling them)
    reference: ReferenceSpec
    config: dict = field(default_factory=dict)          # the model's config: recorded, not interpreted
    precision: str = "fp32"
    conditioning: tuple = ()                             # ConditioningSpec
    state: tuple = ()                                    # StateSpec
    schedule: StepSchedule | None = None
    latent: LatentSpec | None = None
    parts: dict = field(default_factory=dict)           # name -> PartSpec
    validation: dict = field(default_factory=dict)      # what export measured
    calibration: dict | None = None                     # fp16 / int8 bundles: what calibrate did and measured
    source: dict = field(default_factory=dict)          # provenance: checkpoint, data set
    notes: dict = field(default_factory=dict)           # words for people (rules, how the parts combine)
    versions: dict = field(default_factory=dict)
    created: str | None = None

    @property
    def kind_rule(self) -> Kind:
        return KINDS[self.kind]

    @property
    def context(self) -> tuple:
        return self.schedule.context if self.schedule else ()

    def data_record(self) -> dict:
        """The data set and split recorded at export, for commands run without --data: the split (levels,
        test fraction, seed) always; the data set itself only when it is a built-in one. A path recorded by
        someone else's export is never opened (a bundle must not make this machine read what it names): it
        comes back as ``recorded_path`` so that the command can ask for --data."""
        from pixelrt.data import DATASETS

        rec = self.source.get("data") if isinstance(self.source, dict) else None
        if isinstance(rec, str):
            rec = {"spec": rec}
        if not isinstance(rec, dict):
            return {}
        out = {}
        spec = rec.get("spec")
        if spec in DATASETS:
            out["spec"] = spec
        elif isinstance(spec, str) and len(spec) <= 4096:
            out["recorded_path"] = spec
        lv, tf, seed = rec.get("levels"), rec.get("test_fraction"), rec.get("split_seed")
        if isinstance(lv, int) and not isinstance(lv, bool) and 2 <= lv <= 256:
            out["levels"] = lv
        if isinstance(tf, float) and 0.0 < tf < 1.0:
            out["test_fraction"] = tf
        if isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**32:
            out["split_seed"] = seed
        return out

    def conditioning_record(self, name: str) -> ConditioningSpec | None:
        return next((c for c in self.conditioning if c.name == name), None)

    def to_json(self) -> dict:
        out = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind, "family": self.family,
               "config": self.config, "precision": self.precision, "image": self.image.to_json(),
               "head": self.head.to_json(), "conditioning": [c.to_json() for c in self.conditioning],
               "graphs": {k: g.to_json() for k, g in self.graphs.items()},
               "state": [s.to_json() for s in self.state],
               "schedule": self.schedule.to_json() if self.schedule else None,
               "latent": self.latent.to_json() if self.latent else None,
               "parts": {k: p.to_json() for k, p in self.parts.items()},
               "files": {k: r.to_json() for k, r in self.files.items()},
               "reference": self.reference.to_json(), "validation": self.validation,
               "calibration": self.calibration, "source": self.source, "notes": self.notes,
               "versions": self.versions, "created": self.created}
        return out

    # -- reading ------------------------------------------------------------------
    KEYS = ("format", "format_version", "kind", "family", "config", "precision", "image", "head", "conditioning",
            "graphs", "state", "schedule", "latent", "parts", "files", "reference", "validation", "calibration",
            "source", "notes", "versions", "created")

    @classmethod
    def parse(cls, f: Field) -> "Manifest":
        """Every field, then the consistency across fields; one BundleError naming the first miss."""
        f.obj(cls.KEYS)
        version = f["format_version"].value
        if version != FORMAT_VERSION:
            f["format_version"].fail(f"is {version!r}; this pixelrt reads version {FORMAT_VERSION}: re-export the "
                                     "bundle with this version of pixelrt")
        kind = f["kind"].str(tuple(KINDS))
        rule = KINDS[kind]
        m = cls(
            kind=kind, family=f["family"].name(), image=ImageSpec.parse(f["image"]), head=HeadSpec.parse(f["head"]),
            graphs={k: GraphSpec.parse(g) for k, g in f["graphs"].items(16)},
            files={k: FileRecord.parse(r) for k, r in f["files"].items(1024)},
            reference=ReferenceSpec.parse(f["reference"]), config=_opaque(f, "config"),
            precision=f["precision"].str(PRECISIONS),
            conditioning=tuple(ConditioningSpec.parse(c) for c in f["conditioning"].list(0, 16)),
            state=tuple(StateSpec.parse(s) for s in f["state"].list(0, 256)),
            schedule=StepSchedule.parse(f["schedule"]) if rule.schedule else _absent(f, "schedule", kind),
            latent=LatentSpec.parse(f["latent"]) if rule.latent else _absent(f, "latent", kind),
            parts={k: PartSpec.parse(p) for k, p in f["parts"].items(8)},
            validation=_opaque(f, "validation"), calibration=_opaque(f, "calibration", optional=True),
            source=_opaque(f, "source"), notes=_opaque(f, "notes"),
            versions={k: v.str(max_len=128) for k, v in f["versions"].items(32)},
            created=f.get("created") and f["created"].str(max_len=64),
        )
        m.check(f)
        return m

    def check(self, f: Field) -> None:
        """The rules that span records (the image against the states, the graphs against the schedule...)."""
        rule = self.kind_rule
        if self.head.levels != self.image.levels:
            f["head"]["levels"].fail(f"is {self.head.levels} but image.levels is {self.image.levels}")
        for name in rule.graphs:
            if name not in self.graphs:
                f["graphs"].child(name, None).fail(f"is missing (a {self.kind} bundle has graphs "
                                                   f"{', '.join(rule.graphs)})")
        if set(self.parts) != set(rule.parts):
            f["parts"].fail(f"must name exactly the parts {list(rule.parts)} of a {self.kind} bundle, "
                            f"got {sorted(self.parts)}")
        for name in self.files:
            check_file_name(f["files"], name)
        files_f = f["files"]
        graph_files = [g.file for g in self.graphs.values()]
        for k, g in self.graphs.items():
            if g.file not in self.files:
                f["graphs"][k]["file"].fail(f"names {g.file!r}, which files does not list with its sha256")
            if graph_files.count(g.file) > 1:
                f["graphs"][k]["file"].fail(f"names {g.file!r}, which another graph uses too")
        needed = ("elbo_nats", "iwae_nats") if rule.latent else ("loglik_nats",)
        for k in needed:
            if k not in self.reference.values:
                f["reference"].child(k, None).fail(f"is missing (a {self.kind} bundle records it per reference image)")
        if rule.latent and (self.reference.samples is None or self.reference.noise_seed is None):
            f["reference"].fail("must give samples and noise_seed (the stored latent noise's)")
        if self.reference.file not in self.files:
            f["reference"]["file"].fail(f"names {self.reference.file!r}, which files does not list with its sha256")
        for k, p in self.parts.items():
            if f"{p.dir}/{MANIFEST}" not in self.files:
                files_f.child(f"{p.dir}/{MANIFEST}", None).fail(f"is missing: the manifest of part {k!r} must be "
                                                                "listed with its sha256")
        names = [c.name for c in self.conditioning]
        if len(set(names)) != len(names):
            f["conditioning"].fail("names one input twice")
        if self.schedule is not None:
            self._check_schedule(f)
        elif self.state:
            f["state"].fail(f"must be empty: a {self.kind} bundle has no step loop of its own")
        if rule.check:
            rule.check(self, f)

    def _check_schedule(self, f: Field) -> None:
        s, (C, _, W) = self.schedule, self.image.shape
        if C % s.substeps_per_pixel:
            f["schedule"]["substeps_per_pixel"].fail(f"({s.substeps_per_pixel}) must divide the {C} channels")
        for name in s.context:
            if self.conditioning_record(name) is None:
                f["schedule"]["context"].fail(f"names {name!r}, which conditioning does not describe")
        if s.row_graph is not None and s.row_graph not in self.graphs:
            f["schedule"]["row_graph"].fail(f"names {s.row_graph!r}, which graphs does not have")
        step = self.graphs.get("step")
        row = self.graphs.get(s.row_graph) if s.row_graph else None
        known = {st.name for st in self.state} | set(s.context)
        for key, g, own in (("full", self.graphs.get("full"), {"x"}),
                            ("step", step, {"pixel", "row", "col", "channel", "force", "noise"}),
                            (s.row_graph, row, {"row_pixels", "row"})):
            extra = [t.name for t in (g.inputs if g else ()) if t.name not in own | known]
            if extra:
                f["graphs"][key]["inputs"].fail(f"lists {extra[0]!r}, which is neither a loop input, a state nor "
                                                "the schedule's context")
        names = [st.name for st in self.state]
        total = 0
        for i, st in enumerate(self.state):
            sf = f["state"][i]
            total += st.bytes_per_image
            if names.count(st.name) > 1:
                sf["name"].fail(f"{st.name!r} is used by two states")
            if st.update in RING_KINDS:
                if W % st.stride:
                    sf["update"]["stride"].fail(f"({st.stride}) must divide the image width {W}")
                if st.shape[3] != W // st.stride + 2 * st.pad:
                    sf["shape"].fail(f"axis 3 is {st.shape[3]}, but width {W} / stride {st.stride} + 2 * pad "
                                     f"{st.pad} = {W // st.stride + 2 * st.pad}")
                if st.pad > W:
                    sf["update"]["pad"].fail(f"({st.pad}) is wider than the image ({W})")
            owner = row if st.update == "row" else step
            if st.update == "row" and row is None:
                sf["update"]["kind"].fail("is 'row', but schedule.row_graph names no per-row graph")
            reader = [g for g in (step, row) if g is not None and g.input(st.name) is not None]
            if not reader:
                sf["name"].fail(f"{st.name!r} is not an input of the step or row graph")
            for g in reader:
                t = g.input(st.name)
                if (t.dtype, tuple(t.shape)) != (st.dtype, tuple(st.shape)):
                    sf["shape"].fail(f"and dtype ({st.dtype} {list(st.shape)}) differ from the graph input "
                                     f"({t.dtype} {list(t.shape)})")
            out = owner.output(st.source) if owner is not None else None
            if out is None:
                sf["update"]["from_output"].fail(f"names {st.source!r}, which the "
                                                 f"{'row' if st.update == 'row' else 'step'} graph does not output")
            want = (BATCH, st.shape[1], st.shape[4]) if st.update in RING_KINDS else tuple(st.shape)
            if tuple(out.shape) != want or out.dtype != st.dtype:
                sf["update"]["from_output"].fail(f"output {st.source!r} is {out.dtype} {list(out.shape)}, the state "
                                                 f"needs {st.dtype} {list(want)}")
        if total > MAX_STATE_TOTAL:
            f["state"].fail(f"adds up to {total} bytes per image, at most {MAX_STATE_TOTAL} are allowed")
        if s.wavefront is not None:
            self._check_wavefront(f["schedule"]["wavefront"])

    def _check_wavefront(self, f: Field) -> None:
        """A wavefront schedule: its graph, states the host can commit per pixel, and a lag no smaller than
        every ring's reach into the row above (row i must not read a column row i - 1 has not written)."""
        s, (C, _, W) = self.schedule, self.image.shape
        wave = self.graphs.get(s.wavefront.graph)
        if wave is None or s.wavefront.graph in ("full", "step"):
            f["graph"].fail(f"names {s.wavefront.graph!r}, which is not a graph of its own in graphs")
        if s.row_graph is not None:
            f.fail("cannot go with a per-row graph (schedule.row_graph): a row graph needs the whole row above")
        if s.wavefront.lag > W:
            f["lag"].fail(f"({s.wavefront.lag}) is wider than the image ({W})")
        for st in self.state:
            if st.update != "ring-row":
                f.fail(f"needs ring-row states only; state {st.name!r} is {st.update!r}")
            if st.rows < st.pad + 1 or s.wavefront.lag < st.pad + 1:
                f["lag"].fail(f"({s.wavefront.lag}) must exceed state {st.name!r}'s pad ({st.pad}), and its rows "
                              f"({st.rows}) must cover the pad: row i reads up to pad columns right in the rows above")
            t, layout = wave.input(st.name), s.wavefront.layout
            want = s.wavefront.state_shape(st)
            if t is None or (t.dtype, tuple(t.shape)) != (st.dtype, want):
                f["graph"].fail(f"graph {s.wavefront.graph!r} must take state {st.name!r} as {st.dtype} "
                                f"{list(want)} (layout {layout})")
            out = wave.output(st.source)
            want = s.wavefront.new_shape(st)
            if out is None or tuple(out.shape) != want or out.dtype != st.dtype:
                f["graph"].fail(f"graph {s.wavefront.graph!r} must give {st.source!r} as {st.dtype} {list(want)} "
                                f"(layout {layout})")
        known = {st.name for st in self.state} | set(s.context) | set(WAVE_INPUTS)
        extra = [t.name for t in wave.inputs if t.name not in known]
        if extra:
            f["graph"].fail(f"graph {s.wavefront.graph!r} lists {extra[0]!r}, which is neither a wavefront input, "
                            "a state nor the schedule's context")
        cps = s.channels_per_substep(C)
        for side, want in (("inputs", TensorSpec("rows", "int64", (PIXELS,))),
                           ("inputs", TensorSpec("cols", "int64", (PIXELS,))),
                           ("outputs", TensorSpec("value", "int64",
                                                  s.wavefront.per_pixel(*(() if cps == 1 else (cps,)))))):
            got = (wave.input if side == "inputs" else wave.output)(want.name)
            if got is None or (got.dtype, tuple(got.shape)) != (want.dtype, want.shape):
                f["graph"].fail(f"graph {s.wavefront.graph!r} must have {side[:-1]} {want.name!r} as {want.dtype} "
                                f"{list(want.shape)}")


def _absent(f: Field, key: str, kind: str):
    if f.get(key) is not None:
        f[key].fail(f"must be null in a {kind} bundle")
    return None


def _opaque(f: Field, key: str, optional: bool = False):
    v = f.get(key)
    if v is None:
        if optional:
            return None
        return {}
    v.obj(open_keys=True)
    return v.opaque()
