"""What every bundle kind's pipeline returns, and the one interface they share (torch-free).

A :class:`Pipeline` turns a verified bundle into images (``sample``), per-image scores
(``evaluate``), an interpolation row (``interpolate``, where the kind has a latent) and a
re-measurement of the bundle's reference batch (``check_reference``), with one signature for
every kind. The public methods check what is common (the bundle's kind, counts, batch sizes,
conditioning, the options a kind supports) and time the work; each kind implements the
underscored hooks on top of its runtime module (``runtime/sampler.py``, ``runtime/vae.py``,
``runtime/pixelvae.py``, ``runtime/multiscale.py``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pixelrt.bundle import REEXPORT
from pixelrt.errors import BundleError, PixelrtError
from pixelrt.runtime.backends import wave_loop_used

# Options only some kinds have: how the refusal reads, with {flag} as the caller spells it (``--mean`` on the
# command line, ``mean=True`` in Python) and {kinds} the titles of the kinds that support it.
FEATURES = {
    "mean": "{flag} applies to {kinds} bundles",
    "iwae": "{flag} applies to {kinds} bundles",
    "interpolate": "{flag} needs a {kinds} bundle",
}

# reference.npz array -> the manifest's per-image record of the same export-time numbers
REFERENCE_VALUES = {"loglik": "loglik_nats", "elbo": "elbo_nats", "iwae": "iwae_nats"}

SAMPLE_BATCH = 64    # images per step-loop batch (VAE: latents per decoder call)
EVAL_BATCH = 256     # images per full-graph call (latent kinds: latents per decoder call)


@dataclass
class Samples:
    """Images drawn from a bundle, and what the kind knows about them.

    images: uint8 (N, C, H, W). logp: float32 (N, C, H, W) log-prob of each drawn sub-pixel given its past
    (nats), where the kind samples autoregressively (PixelVAE: given z as well). loglik / bits_per_dim:
    per-image (N,) log-probability of the draw in nats and bits per sub-pixel (multi-scale: log p1(c) +
    log p2(x|c); PixelVAE: log p(x|z)); None for a VAE. ``extra`` holds the rest by name (``label``, ``z``,
    ``coarse``, ``logp1``, ``logp2``), also readable as attributes (``samples.z``).
    """

    images: np.ndarray
    logp: np.ndarray | None = None
    loglik: np.ndarray | None = None
    bits_per_dim: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    seed: int = 0
    runtime: str = "ort"
    seconds: float = 0.0
    description: str = ""

    def __getattr__(self, name: str):
        extra = self.__dict__.get("extra") or {}
        if name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__} has no {name!r} (this kind's extra fields: "
                             f"{', '.join(extra) or 'none'})")

    def __len__(self) -> int:
        return len(self.images)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array by name (images, logp where present, the extra fields): what ``--npz`` saves."""
        out = {"images": self.images}
        if self.logp is not None:
            out["logp"] = self.logp
        out.update(self.extra)
        return out

    def summary(self) -> str:
        """One line: what was drawn, how, how fast, and the draws' bits/dim where the kind has them."""
        return self.description


@dataclass
class Scores:
    """Per-image scores of images under a bundle.

    nats / bits_per_dim: (N,) the log-likelihood the kind reports, float64: exact for autoregressive bundles,
    the paper's bound log p1(c) + log p2(x|c) for multi-scale ones, the ELBO for VAE and PixelVAE bundles
    (whose ``iwae`` maps K -> the tighter IWAE-K bound per image, with ``kl`` and ``recon`` beside it).
    logp: (N, C, H, W) per-sub-pixel log-probs (autoregressive bundles). ``extra``: the rest by name
    (``loglik1``, ``loglik2`` of a multi-scale bundle's stages).
    """

    image: object                 # the bundle's ImageSpec
    nats: np.ndarray
    bits_per_dim: np.ndarray
    logp: np.ndarray | None = None
    elbo: np.ndarray | None = None
    kl: np.ndarray | None = None
    recon: np.ndarray | None = None
    iwae: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    source: str = "images"
    runtime: str = "ort"
    seconds: float = 0.0
    lines: tuple = ()

    def __getattr__(self, name: str):
        extra = self.__dict__.get("extra") or {}
        if name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__} has no {name!r}")

    def __len__(self) -> int:
        return len(self.nats)

    @property
    def loglik(self) -> np.ndarray:
        """Alias of ``nats``."""
        return self.nats

    @property
    def mean_bits_per_dim(self) -> float:
        return float(np.mean(self.bits_per_dim))

    def rows(self) -> list[str]:
        """The report, one printed line each (what ``pixelrt eval`` prints before the reference check)."""
        return list(self.lines)

    def summary(self) -> dict:
        """The headline numbers as a JSON-able dict: images, mean bits/dim and nats, and for latent-variable
        kinds the ELBO, KL, reconstruction and each IWAE-K in bits/dim."""
        out = {"images": len(self.nats), "bits_per_dim": self.mean_bits_per_dim, "nats": float(np.mean(self.nats)),
               "runtime": self.runtime, "source": self.source}
        if self.elbo is not None:
            bpd = lambda a: float(np.mean(self.image.bits_per_dim(a)))  # noqa: E731
            out.update({"elbo_bits_per_dim": bpd(self.elbo), "kl_nats": float(np.mean(self.kl)),
                        "recon_nats": float(np.mean(self.recon))})
            out.update({f"iwae_{k}_bits_per_dim": bpd(v) for k, v in sorted(self.iwae.items())})
        for k, v in self.extra.items():
            if k.startswith("loglik"):
                out[f"{k}_bits_per_dim"] = float(np.mean(self.image.bits_per_dim(v)))
        return out


@dataclass
class Interpolation:
    """One row: the first image, ``steps`` decoded points along the line between the two latents, the second
    image (uint8 (steps + 2, C, H, W)); ``description`` says how the points were decoded."""

    images: np.ndarray
    steps: int
    seed: int = 0
    description: str = ""


@dataclass
class ReferenceCheck:
    """The bundle's reference batch re-scored on a runtime: the largest |d bits/dim| against the export-time
    numbers (reference.npz and the manifest), within ``budget`` (a miss raises ParityError instead)."""

    root: Path
    runtime: str
    drift: float
    budget: float
    quantities: tuple             # what was compared: ("loglik",) or ("elbo", "iwae")
    template: str

    def line(self) -> str:
        return self.template.format(drift=self.drift, budget=self.budget)


def _or(titles: list[str]) -> str:
    return titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " or " + titles[-1]


PIPELINES: dict = {}  # kind -> Pipeline, filled by runtime/pipelines/__init__.py


class Pipeline:
    """One bundle kind's sample / evaluate / interpolate / check_reference (subclasses per kind).

    ``supports``: the options of :data:`FEATURES` the kind has; asking a pipeline for another one raises a
    PixelrtError naming the kinds that have it (``refusal``). ``why_not``: the kind's own reason, appended.
    """

    kind: str = ""
    title: str = ""
    supports: frozenset = frozenset()
    why_not: dict = {}
    reference_template = "reference batch vs export time: |d bits/dim| {drift:.1e} (budget {budget:.0e})"

    # -- what the kind supports

    def refusal(self, bundle, feature: str, flag: str | None = None) -> PixelrtError:
        """The error for asking this kind for ``feature`` (spelled ``flag``, e.g. ``--mean``)."""
        flag = flag or {"interpolate": "interpolate"}.get(feature, f"{feature}=")
        kinds = _or([p.title for p in PIPELINES.values() if feature in p.supports])
        text = FEATURES[feature].format(flag=flag, kinds=kinds)
        return PixelrtError(f"{text}; {bundle.root} is a {bundle.family} bundle"
                            + self.why_not.get(feature, "").format(flag=flag))

    def require(self, bundle, feature: str, flag: str | None = None) -> None:
        """Raise :meth:`refusal` unless this kind supports ``feature``."""
        if feature not in self.supports:
            raise self.refusal(bundle, feature, flag)

    def _check_bundle(self, bundle):
        from pixelrt.bundle import Bundle, load_bundle

        bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        if bundle.kind != self.kind:
            raise BundleError(f"{bundle.root} is a {bundle.kind} bundle ({bundle.family}); the {self.kind} "
                              "pipeline cannot run it: use pixelrt.runtime.pipelines.pipeline(bundle)")
        return bundle

    # -- the interface

    def sample(self, bundle, n: int, seed: int = 0, *, context: dict | None = None, runtime: str = "ort",
               batch_size: int = SAMPLE_BATCH, progress: bool = False, mean: bool = False,
               loop: str = "auto") -> Samples:
        """``n`` images from ``seed`` (noise, latents and schedule drawn here), as the bundle's kind samples.
        ``loop``: the step loop of a single autoregressive bundle (runtime/backends.py ``LOOPS``; the same
        images either way, the wavefront loop in fewer calls)."""
        bundle = self._check_bundle(bundle)
        if mean:
            self.require(bundle, "mean", "mean=True")
        _count(n, "number of images")
        _count(batch_size, "batch size")
        self._check_context(bundle, context, n)
        if self.kind == "autoregressive":
            wave_loop_used(runtime, bundle, loop)  # a loop it cannot run is refused before any work
        elif loop != "auto":
            raise PixelrtError(f"loop {loop!r}: a {self.kind} bundle samples through its own pipeline; the step loop "
                               "choice applies to single autoregressive bundles")
        extra = {"loop": loop} if self.kind == "autoregressive" else {}
        t0 = time.perf_counter()
        out = self._sample(bundle, int(n), int(seed), context=context, runtime=runtime, batch_size=int(batch_size),
                           progress=progress, mean=mean, **extra)
        out.seed, out.runtime, out.seconds = int(seed), runtime, time.perf_counter() - t0
        out.description = self._describe_samples(bundle, out, mean=mean)
        return out

    def evaluate(self, bundle, x: np.ndarray, *, context: dict | None = None, runtime: str = "ort",
                 batch_size: int = EVAL_BATCH, progress: bool = False, iwae: int | None = None, seed: int = 0,
                 source: str = "images") -> Scores:
        """Per-image bits/dim and nats of ``x`` (uint8 (N, C, H, W)); ``iwae``: the largest IWAE K (latent kinds,
        default 100); ``seed``: their latent noise."""
        bundle = self._check_bundle(bundle)
        if iwae is not None:
            self.require(bundle, "iwae", "iwae=")
        _count(batch_size, "batch size")
        if context:  # autoregressive bundles check theirs in runtime/evaluate.py; the others take none
            self._check_context(bundle, context, len(x))
        t0 = time.perf_counter()
        out = self._evaluate(bundle, x, context=context, runtime=runtime, batch_size=int(batch_size),
                             progress=progress, iwae=iwae, seed=int(seed), source=source)
        out.runtime, out.source, out.seconds = runtime, source, time.perf_counter() - t0
        out.lines = tuple(self._describe_scores(bundle, out, seed=int(seed)))
        return out

    def interpolate(self, bundle, pair: np.ndarray, steps: int = 10, seed: int = 0, *,
                    runtime: str = "ort") -> Interpolation:
        """The row between two images' latents: uint8 (2, C, H, W) in, ``steps`` points plus both ends out."""
        bundle = self._check_bundle(bundle)
        self.require(bundle, "interpolate")
        return self._interpolate(bundle, pair, int(steps), int(seed), runtime=runtime)

    def check_reference(self, bundle, runtime: str = "ort") -> ReferenceCheck:
        """Re-score the bundle's reference batch on ``runtime`` and compare with the export-time numbers in
        reference.npz and in the manifest (``runtime/reference_check.py``): ParityError beyond the precision's
        budget, else the largest drift."""
        from pixelrt.runtime.reference_check import check_reference, drift_budget

        bundle = self._check_bundle(bundle)
        ref = bundle.reference()
        now = self._rescore_reference(bundle, ref, runtime)
        recorded = bundle.manifest.reference.values
        drift = 0.0
        for key, value in now.items():
            if key not in ref:
                raise BundleError(f"{bundle.root / bundle.manifest.reference.file} lacks the array {key!r} this "
                                  f"{self.kind} bundle's reference check needs; {REEXPORT}")
            drift = max(drift, check_reference(bundle, value, ref[key]))
            if recorded.get(REFERENCE_VALUES[key]) is not None:
                drift = max(drift, check_reference(bundle, value, np.asarray(recorded[REFERENCE_VALUES[key]])))
        return ReferenceCheck(bundle.root, runtime, drift, drift_budget(bundle), tuple(now), self.reference_template)

    # -- per kind

    def _check_context(self, bundle, context, n: int) -> None:
        from pixelrt.runtime.sampler import check_context

        check_context(context, bundle.context, n)

    def _sample(self, bundle, n, seed, **kw) -> Samples:
        raise NotImplementedError

    def _describe_samples(self, bundle, s: Samples, mean: bool) -> str:
        raise NotImplementedError

    def _evaluate(self, bundle, x, **kw) -> Scores:
        raise NotImplementedError

    def _describe_scores(self, bundle, s: Scores, seed: int) -> list[str]:
        raise NotImplementedError

    def _interpolate(self, bundle, pair, steps, seed, runtime) -> Interpolation:
        raise NotImplementedError

    def _rescore_reference(self, bundle, ref: dict, runtime: str) -> dict[str, np.ndarray]:
        """reference.npz key -> the same per-image nats measured now."""
        raise NotImplementedError


def _count(value, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise PixelrtError(f"{what} must be an integer, got {value!r}")
    if value < 1:
        raise PixelrtError(f"{what} must be at least 1, got {value}")


def timing(n: int, seconds: float, digits: int = 1) -> str:
    """'in 0.12 s (20.0 ms/image)'."""
    return f"in {seconds:.2f} s ({1e3 * seconds / n:.{digits}f} ms/image)"
