"""Typed records of the bundle manifest: each with ``to_json`` and a strict ``parse`` from a Field.

A record checks what it can see by itself (types, ranges, names); the checks that need
several records at once (a state's shape against the image, a graph's inputs against the
states) live in :mod:`pixelrt.bundle.manifest`. Torch-free: numpy only.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from pixelrt.bundle.fields import Field
from pixelrt.data import check_images
from pixelrt.errors import DataError

BATCH = "batch"
PIXELS = "pixels"          # a wavefront graph's pixels in flight (docs/bundle.md, "wavefront")
SYMBOLIC = (BATCH, PIXELS)
MAX_SIDE = 4096            # image height / width
MAX_CHANNELS = 16
MAX_DIMS = 1 << 24         # C * H * W
MAX_AXIS = 1 << 24         # one static axis of a tensor
MAX_RANK = 8
DTYPES = ("float32", "float16", "float64", "int64", "int32", "uint8", "int8", "bool")
SHA256 = re.compile(r"[0-9a-f]{64}")


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

    def to_json(self) -> dict:
        return {"channels": self.channels, "height": self.height, "width": self.width, "levels": self.levels}

    @classmethod
    def parse(cls, f: Field) -> "ImageSpec":
        f.obj(("channels", "height", "width", "levels"))
        img = cls(f["channels"].int(1, MAX_CHANNELS), f["height"].int(1, MAX_SIDE), f["width"].int(1, MAX_SIDE),
                  f["levels"].int(2, 256))
        if img.dims > MAX_DIMS:
            f.fail(f"is {img.dims} sub-pixels per image, at most {MAX_DIMS} are allowed")
        return img


HEADS = {  # kind -> extra fields (name -> (lo, hi))
    "categorical": {},
    "discretized-logistic": {"components": (1, 1)},
    "discretized-logistic-mixture": {"mixtures": (1, 256)},
}


@dataclass(frozen=True)
class HeadSpec:
    """The likelihood head: how the graphs turn features into a distribution over levels."""

    kind: str
    levels: int
    sampler: str
    mixtures: int | None = None     # discretized-logistic-mixture
    components: int | None = None   # discretized-logistic
    decoder: str | None = None      # a PixelVAE's words on its p(x|z)

    def to_json(self) -> dict:
        out = {"kind": self.kind, "levels": self.levels, "sampler": self.sampler}
        out.update({k: v for k, v in (("mixtures", self.mixtures), ("components", self.components),
                                      ("decoder", self.decoder)) if v is not None})
        return out

    @classmethod
    def parse(cls, f: Field) -> "HeadSpec":
        kind = f["kind"].str(tuple(HEADS))
        extra = HEADS[kind]
        f.obj(("kind", "levels", "sampler", *extra), ("decoder",))
        vals = {k: f[k].int(*rng) for k, rng in extra.items()}
        dec = f.get("decoder")
        return cls(kind, f["levels"].int(2, 256), f["sampler"].str(max_len=256), decoder=dec and dec.str(), **vals)


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, element type and shape (ints, or "batch")."""

    name: str
    dtype: str
    shape: tuple
    note: str | None = None   # what the input is for, in words
    unit: str | None = None   # e.g. "nats"

    def to_json(self) -> dict:
        out = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        out.update({k: v for k, v in (("note", self.note), ("unit", self.unit)) if v is not None})
        return out

    @classmethod
    def parse(cls, f: Field) -> "TensorSpec":
        f.obj(("name", "dtype", "shape"), ("note", "unit"))
        note, unit = f.get("note"), f.get("unit")
        return cls(f["name"].name(), f["dtype"].str(DTYPES), parse_shape(f["shape"]), note and note.str(),
                   unit and unit.str(max_len=64))


def parse_shape(f: Field, symbolic: bool = True) -> tuple:
    dims = []
    for d in f.list(0, MAX_RANK):
        if symbolic and d.value in SYMBOLIC:
            dims.append(d.value)
        else:
            dims.append(d.int(0, MAX_AXIS))
    return tuple(dims)


@dataclass(frozen=True)
class GraphSpec:
    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((t for t in self.outputs if t.name == name), None)

    def to_json(self) -> dict:
        return {"file": self.file, "inputs": [t.to_json() for t in self.inputs],
                "outputs": [t.to_json() for t in self.outputs]}

    @classmethod
    def parse(cls, f: Field) -> "GraphSpec":
        f.obj(("file", "inputs", "outputs"))
        g = cls(f["file"].str(max_len=255), tuple(TensorSpec.parse(t) for t in f["inputs"].list(1, 256)),
                tuple(TensorSpec.parse(t) for t in f["outputs"].list(1, 256)))
        for side, names in (("inputs", g.input_names()), ("outputs", g.output_names())):
            dup = next((n for n in names if names.count(n) > 1), None)
            if dup:
                f[side].fail(f"names {dup!r} twice")
        return g


@dataclass(frozen=True)
class ConditioningSpec:
    """A per-image input besides the image: a class label or a map, with its per-image shape."""

    name: str
    dtype: str
    shape: tuple     # per image (no batch axis)
    kind: str        # "class" | "map"
    classes: int | None = None

    def io(self) -> TensorSpec:
        """The record as a graph input (batch axis first)."""
        return TensorSpec(self.name, self.dtype, (BATCH, *self.shape))

    def to_json(self) -> dict:
        out = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "kind": self.kind}
        if self.classes is not None:
            out["classes"] = self.classes
        return out

    @classmethod
    def parse(cls, f: Field) -> "ConditioningSpec":
        kind = f["kind"].str(("class", "map"))
        f.obj(("name", "dtype", "shape", "kind") + (("classes",) if kind == "class" else ()))
        if kind == "class":
            if f["shape"].value != []:
                f["shape"].fail("of a class label must be [] (one integer per image)")
            return cls(f["name"].name(), f["dtype"].str(("int64",)), (), kind, f["classes"].int(1, 1 << 20))
        shape = parse_shape(f["shape"], False)
        if int(np.prod(shape, dtype=np.int64)) > MAX_DIMS * 64:
            f["shape"].fail(f"is {int(np.prod(shape, dtype=np.int64))} values per image, too large")
        return cls(f["name"].name(), f["dtype"].str(("float32",)), shape, kind)


@dataclass(frozen=True)
class LatentSpec:
    size: int
    prior: str = "standard-normal"
    posterior: str = "diagonal-gaussian"
    reparameterisation: str = "z = mu + exp(logvar / 2) * eps"

    def to_json(self) -> dict:
        return {"size": self.size, "prior": self.prior, "posterior": self.posterior,
                "reparameterisation": self.reparameterisation}

    @classmethod
    def parse(cls, f: Field) -> "LatentSpec":
        f.obj(("size", "prior", "posterior", "reparameterisation"))
        return cls(f["size"].int(1, 65536), f["prior"].str(("standard-normal",)),
                   f["posterior"].str(("diagonal-gaussian",)), f["reparameterisation"].str())


@dataclass(frozen=True)
class PartSpec:
    """A sub-bundle of a composite bundle (a multi-scale stage, a PixelVAE's PixelCNN): a folder inside
    the bundle holding an ordinary bundle of ``image``, which takes ``context`` from the parent's graphs."""

    dir: str
    image: ImageSpec
    context: str | None = None
    role: str = ""

    def to_json(self) -> dict:
        return {"dir": self.dir, "image": self.image.to_json(), "context": self.context, "role": self.role}

    @classmethod
    def parse(cls, f: Field) -> "PartSpec":
        f.obj(("dir", "image", "context", "role"))
        ctx = f.get("context")
        return cls(f["dir"].str(pattern=PART_DIR, max_len=64), ImageSpec.parse(f["image"]), ctx and ctx.name(),
                   f["role"].str())


PART_DIR = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}")


@dataclass(frozen=True)
class FileRecord:
    """One file of the bundle: its sha256, its size, and where it came from."""

    sha256: str
    bytes: int
    provenance: dict = field(default_factory=dict)  # opset, producer, versions: recorded, never interpreted

    def to_json(self) -> dict:
        return {**self.provenance, "sha256": self.sha256, "bytes": self.bytes}

    @classmethod
    def parse(cls, f: Field) -> "FileRecord":
        f.obj(("sha256", "bytes"), open_keys=True)
        prov = {}
        for k, v in f.items(32):
            if k not in ("sha256", "bytes"):
                prov[k] = v.int(0, 1 << 30) if isinstance(v.value, int) and not isinstance(v.value, bool) \
                    else v.str(max_len=256)
        return cls(f["sha256"].str(pattern=SHA256), f["bytes"].int(0, 1 << 40), prov)


MAX_REFERENCE = 4096


@dataclass(frozen=True)
class ReferenceSpec:
    """The fixed batch stored at export (``file``) and what PyTorch measured on it, per image."""

    file: str
    images: int
    values: dict  # name -> tuple of per-image floats (loglik_nats, bits_per_dim; elbo_nats, iwae_nats, ...)
    samples: int | None = None      # VAE: IWAE samples per image
    noise_seed: int | None = None   # VAE: seed of the stored latent noise

    PER_IMAGE = ("loglik_nats", "bits_per_dim", "elbo_nats", "iwae_nats", "iwae_bits_per_dim")

    def to_json(self) -> dict:
        out = {"file": self.file, "images": self.images}
        out.update({k: v for k, v in (("samples", self.samples), ("noise_seed", self.noise_seed)) if v is not None})
        out.update({k: list(v) for k, v in self.values.items()})
        return out

    @classmethod
    def parse(cls, f: Field) -> "ReferenceSpec":
        f.obj(("file", "images", "bits_per_dim"), ("samples", "noise_seed") + cls.PER_IMAGE)
        n = f["images"].int(1, MAX_REFERENCE)
        values = {}
        for k in cls.PER_IMAGE:
            if f.get(k) is not None:
                values[k] = tuple(v.number() for v in f[k].list(n, n))
        s, seed = f.get("samples"), f.get("noise_seed")
        return cls(f["file"].str(max_len=255), n, values, s and s.int(1, 1 << 16), seed and seed.int(0, 2**63 - 1))

    @property
    def loglik_nats(self) -> tuple:
        return self.values.get("loglik_nats", ())

    @property
    def bits_per_dim(self) -> tuple:
        return self.values["bits_per_dim"]


def record_field(d, path: str) -> Field:
    from pixelrt.errors import BundleError

    return Field(d, path, "a manifest record", BundleError, "re-run `pixelrt export CKPT -o BUNDLE/`")
