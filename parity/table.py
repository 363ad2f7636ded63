"""The parity tables, keyed by the model's kind (its registry entry's ``kind``: ``pixelrt.bundle.KINDS``).

``PARITY[kind](model, bundle_or_None, test_split, options) -> ParityReport``: a seeded sample of the whole
held-out split (``parity/options.py``), the bundle given or one exported to a temporary folder with
``pixelrt.export.export_bundle``, then the kind's comparison, every row with its budget
(``pixelrt.runtime.parity``).

``FIELDS[kind](model, meta, size_or_None, seed) -> [FieldReport]``: the receptive field by autograd.

``PRECISION[kind](model, bundles, test_split, options) -> PrecisionReport``: several bundles (FP32, FP16,
INT8) in each runtime against FP32 PyTorch.

A kind missing from a table is one error naming the kinds it has (:func:`lookup`).
"""
from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from pixelrt.errors import PixelrtError
from pixelrt.parity.autoregressive import autoregressive_parity
from pixelrt.parity.latent import pixelvae_parity, vae_parity
from pixelrt.parity.multiscale import multiscale_parity
from pixelrt.parity.options import REFERENCE_IMAGES, ParityOptions, heldout_sample
from pixelrt.parity.precision import precision_parity
from pixelrt.parity.receptive_field import decoder_fields, model_fields, stage_fields


def kind_of(model) -> str:
    """The bundle kind of ``model`` (the model contract's ``kind_of``: registered or not)."""
    from pixelrt.models.contract import kind_of as contract_kind

    return contract_kind(model)


def lookup(table: dict, kind: str, what: str) -> Callable:
    try:
        return table[kind]
    except KeyError:
        raise PixelrtError(f"{what} has no entry for a {kind!r} model; it covers: {', '.join(table)}") from None


@contextmanager
def bundle_for(model, bundle, held, opts: ParityOptions):
    """``bundle``, or one exported from ``model`` to a temporary folder (reference batch: the first images of
    the held-out sample, with their conditioning inputs), removed afterwards."""
    if bundle is not None:
        yield bundle
        return
    if opts.image is None:
        raise PixelrtError("parity without --bundle exports one and needs the checkpoint's image spec")
    from pixelrt.export import export_bundle
    from pixelrt.runtime.conditioning import data_context

    from pixelrt.models.contract import conditioning

    names = [c.name for c in conditioning(model)]  # the step protocol's context records
    context = {k: v[:REFERENCE_IMAGES] for k, v in data_context(names, held).items()}
    with tempfile.TemporaryDirectory(prefix="pixelrt-parity-") as tmp:
        opts.log("exporting a bundle to a temporary folder (pass --bundle to compare an existing one)")
        yield export_bundle(model, opts.image, held.x[:REFERENCE_IMAGES], Path(tmp) / "bundle", source=opts.source,
                            log=lambda s: None, context=context or None).bundle


def _check_kind(bundle, kind: str) -> None:
    if bundle is not None and bundle.kind != kind:
        raise PixelrtError(f"{bundle.root} is a {bundle.kind!r} bundle but the checkpoint is a {kind!r} model; "
                           "pass the bundle exported from this checkpoint")


def on_heldout_sample(kind: str, compare: Callable) -> Callable:
    """A ``PARITY`` entry: ``compare(model, bundle, held, opts)`` on the seeded held-out sample of ``test``."""

    def parity(model, bundle, test, opts: ParityOptions):
        _check_kind(bundle, kind)
        held, idx = heldout_sample(test, opts.num, opts.seed)
        with bundle_for(model, bundle, held, opts) as b:
            report = compare(model, b, held, opts)
        report.summary["held-out images compared"] = (f"{len(idx)} of {len(test)}, a random sample of the whole split "
                                                      f"(seed {opts.seed})")
        report.artifacts["heldout_indices"] = idx
        return report

    parity.__name__ = parity.__qualname__ = f"{kind}_parity"
    parity.__doc__ = compare.__doc__
    return parity


def precision_on_heldout_sample(kind: str, table: Callable) -> Callable:
    """A ``PRECISION`` entry: ``table(model, bundles, held, opts)`` on the seeded held-out sample of ``test``."""

    def precision(model, bundles, test, opts: ParityOptions):
        for b in bundles:
            _check_kind(b, kind)
        held, _ = heldout_sample(test, opts.num, opts.seed)
        return table(model, bundles, held, opts)

    precision.__name__ = precision.__qualname__ = f"{kind}_precision_parity"
    return precision


PARITY = {kind: on_heldout_sample(kind, compare) for kind, compare in {
    "autoregressive": autoregressive_parity,
    "vae": vae_parity,
    "pixelvae": pixelvae_parity,
    "multiscale": multiscale_parity,
}.items()}

FIELDS = {
    "autoregressive": model_fields,
    "pixelvae": decoder_fields,
    "multiscale": stage_fields,
}

PRECISION = {kind: precision_on_heldout_sample(kind, table) for kind, table in {
    "autoregressive": precision_parity,
}.items()}
