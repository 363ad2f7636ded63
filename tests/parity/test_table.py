"""The parity tables: one entry per bundle kind, looked up by the model's registry kind; a kind a table
lacks is one error naming the kinds it has; a bundle of another kind is refused before any work."""

import pytest

from pixelrt.bundle import KINDS
from pixelrt.errors import PixelrtError
from pixelrt.parity.options import ParityOptions
from pixelrt.parity.table import FIELDS, PARITY, PRECISION, kind_of, lookup


def test_every_bundle_kind_has_a_parity_entry():
    assert set(PARITY) == set(KINDS)
    assert set(FIELDS) <= set(KINDS) and set(PRECISION) <= set(KINDS)


@pytest.mark.parametrize("family, kind", [("pixelcnn", "autoregressive"), ("gated", "autoregressive"),
                                          ("pixelcnnpp", "autoregressive"), ("rowlstm", "autoregressive"),
                                          ("diagbilstm", "autoregressive"), ("vae", "vae"),
                                          ("pixelvae", "pixelvae"), ("multiscale", "multiscale")])
def test_kind_comes_from_the_registry(family, kind):
    """One name for the kind: the model class's (what parity reads), the registry entry's, the table's key."""
    from pixelrt.models import get_model

    entry = get_model(family)
    assert kind_of(entry.build) == entry.kind == kind and kind in PARITY


def test_a_kind_missing_from_a_table_names_the_known_ones():
    with pytest.raises(PixelrtError, match=r"pixelrt parity --receptive-field has no entry for a 'vae' model; "
                                           r"it covers: autoregressive, pixelvae, multiscale"):
        lookup(FIELDS, "vae", "pixelrt parity --receptive-field")
    with pytest.raises(PixelrtError, match="it covers: autoregressive"):
        lookup(PRECISION, "multiscale", "the precision table")


def test_a_bundle_of_another_kind_is_refused(grey_bundle):
    _, bundle = grey_bundle
    with pytest.raises(PixelrtError, match="is a 'autoregressive' bundle but the checkpoint is a 'vae' model"):
        PARITY["vae"](None, bundle, None, ParityOptions())
