"""What a parity run is asked for (``pixelrt parity``'s flags, or set by hand), and the held-out sample.

The held-out images are a seeded random sample of the whole split, never its first N: on class-sorted
data the first N held-out images are all one class (1.419 bits/dim for them against 1.158 for the whole
held-out set). The indices are sorted, so a seed always names the
same images, and conditioning inputs (labels) are taken at the same indices.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from pixelrt.bundle import ImageSpec
from pixelrt.data import Dataset
from pixelrt.errors import PixelrtError

REFERENCE_IMAGES = 8  # images stored as the reference batch of a bundle exported for a parity run


@dataclass
class ParityOptions:
    num: int = 64            # held-out images compared (a sample of the whole split)
    samples: int = 8         # images sampled by the step loop
    teacher: int = 8         # held-out images run teacher-forced through the step graph
    seed: int = 0            # noise, latent draws and the held-out sample
    iwae: int | None = None  # latent-variable models: IWAE-1, 10, ... K (default 100)
    runtime: str = "ort"     # the runtime compared with PyTorch (runtime.backends.RUNTIMES)
    runtimes: tuple[str, ...] = ("ort",)  # the precision table: runtimes each bundle runs in
    progress: bool = False
    image: ImageSpec | None = None  # the checkpoint's image: needed to export a temporary bundle
    source: dict = field(default_factory=dict)  # provenance recorded in a temporary bundle
    log: Callable[[str], None] = print

    @property
    def k(self) -> int:
        return 100 if self.iwae is None else self.iwae

    @classmethod
    def from_args(cls, args, meta: dict | None = None, record: dict | None = None) -> "ParityOptions":
        """From `pixelrt parity`'s namespace (any object with those attributes; missing ones keep their default)."""
        d = cls()
        meta = meta or {}
        return cls(num=getattr(args, "num", d.num), samples=getattr(args, "samples", d.samples),
                   teacher=getattr(args, "teacher", d.teacher), seed=getattr(args, "seed", d.seed),
                   iwae=getattr(args, "iwae", d.iwae), runtime=getattr(args, "runtime", d.runtime) or d.runtime,
                   progress=not getattr(args, "no_progress", True),
                   image=ImageSpec(**meta["image"]) if meta.get("image") else None,
                   source={"checkpoint": str(getattr(args, "checkpoint", "")), "data": record or {}})


def sample_indices(total: int, num: int, seed: int) -> np.ndarray:
    """``min(num, total)`` distinct indices of ``range(total)`` drawn with ``seed``, sorted (int64)."""
    if num < 1:
        raise PixelrtError(f"-n must be at least 1, got {num}")
    if total < 1:
        raise PixelrtError("the held-out split is empty; parity needs at least one image")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(total, size=min(num, total), replace=False)).astype(np.int64)


def heldout_sample(test: Dataset, num: int, seed: int) -> tuple[Dataset, np.ndarray]:
    """The parity sample of the split ``test``: (images and their labels at the same indices, indices)."""
    idx = sample_indices(len(test), num, seed)
    labels = None if test.labels is None else test.labels[idx]
    return Dataset(x=np.ascontiguousarray(test.x[idx]), levels=test.levels, name=test.name, labels=labels), idx
