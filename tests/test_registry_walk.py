"""One walk over the whole registry: build, causality audit, export, load, sample and parity, every entry
(PixelVAE included) through the same calls. A family added without an entry in SMALL fails here."""
import numpy as np
import pytest
import torch

import pixelrt
from pixelrt.bundle import ImageSpec, load_bundle, sub_bundles
from pixelrt.data import Dataset
from pixelrt.export import export_bundle
from pixelrt.export.validator import LOGP_BUDGET
from pixelrt.models import get_model, model_names
from pixelrt.models.causality import audit_model
from pixelrt.models.contract import kind_of
from pixelrt.parity.options import ParityOptions
from pixelrt.parity.table import PARITY
from pixelrt.runtime.graph_check import check_bundle_graphs

# tiny configs: the walk is about the contract, not about capacity (the family tests go deeper)
SMALL = {
    "pixelcnn": dict(channels=3, hidden=12, blocks=1, head_hidden=6, input_kernel=3),
    "gated": dict(hidden=6, layers=2, head_hidden=6, input_kernel=3, num_classes=3),
    "pixelcnnpp": dict(filters=4, resnets=1, resolutions=2, mixtures=2, dropout=0.0),
    "rowlstm": dict(hidden=4, state=2, layers=1, head_hidden=4, input_kernel=3),
    "diagbilstm": dict(hidden=4, state=2, layers=1, head_hidden=4, input_kernel=3),
    "multiscale": dict(hidden=4, state=2, layers=1, head_hidden=4, input_kernel=3, up_channels=4),
    "vae": dict(height=4, width=4, latent=2, hidden=4, downsample=1, dense=8),
    "resgated": dict(channels=3, hidden=6, blocks=2, input_kernel=3),
    "pixelvae": dict(height=4, width=4, latent=2, hidden=4, downsample=1, dense=8, pixel_hidden=4, pixel_layers=2,
                     input_kernel=3, head_hidden=4),
}
LEVELS = 4


def test_every_registry_entry_is_walked():
    assert sorted(SMALL) == model_names()


@pytest.mark.parametrize("name", model_names())
def test_registry_entry_builds_audits_exports_loads_samples_and_passes_parity(name, tmp_path):
    entry = get_model(name)
    torch.manual_seed(0)
    model = entry.build(entry.make_config(levels=LEVELS, **SMALL[name])).eval()
    C = getattr(model.config, "channels", 1)
    image = ImageSpec(C, 4, 4, LEVELS)
    assert kind_of(model) == entry.kind  # one name for the kind: registry, model, manifest
    if hasattr(model, "logits_from_float"):  # the Jacobian audit of the PyTorch model itself
        assert audit_model(model, image.shape).violations == 0
    rng = np.random.default_rng(0)
    x = rng.integers(0, LEVELS, (3, *image.shape)).astype(np.uint8)
    result = export_bundle(model, image, x, tmp_path / "bundle", log=lambda s: None)
    rep = result.report
    assert rep.ok and result.bundle.kind == entry.kind and result.bundle.family == name
    bundle = load_bundle(tmp_path / "bundle")  # checksums, containment, every graph against its manifest
    loops = [b for b in [bundle, *(sub for _, sub in sub_bundles(bundle))] if b.kind == "autoregressive"]
    causal = [r for r in rep.rows if r.key.endswith("causality_max_dlogp")]  # one probe per step loop
    assert len(causal) == len(loops) and all(r.max == 0.0 for r in causal)
    forced = [r for r in rep.rows if r.key.endswith("step_vs_full_max_dlogp")]
    assert len(forced) == len(loops) and all(r.max <= LOGP_BUDGET for r in forced)
    assert check_bundle_graphs(bundle) >= len(bundle.graphs)
    context = {"label": np.array([0, 2])} if name == "gated" else None
    samples = pixelrt.sample(bundle, 2, seed=1, context=context)
    assert samples.images.shape == (2, *image.shape) and samples.images.max() < LEVELS

    labels = rng.integers(0, 3, 12) if name == "gated" else None
    held = Dataset(rng.integers(0, LEVELS, (12, *image.shape)).astype(np.uint8), LEVELS, "random", labels)
    report = PARITY[entry.kind](model, bundle, held, ParityOptions(num=6, samples=2, teacher=2, iwae=4,
                                                                    log=lambda s: None))
    assert report.ok, report.table()
    likelihood = [r for r in report.rows if r.unit in ("bits/dim", "nats") and r.budget is not None]
    assert likelihood and all(r.ok for r in likelihood)  # PyTorch vs the bundle, in the units of its kind
