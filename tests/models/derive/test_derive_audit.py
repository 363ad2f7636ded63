"""The derivation's own checks, in PyTorch (no export): the Jacobian causality audit of the derived full
path, what is cached, and a wrong step path refused naming the value that diverged."""
from __future__ import annotations

import pytest
import torch

from pixelrt.models.causality import audit_model
from pixelrt.models.derive import Adapter, DeriveError, derive
from pixelrt.models.derive.audit import audit
from tests.models.derive import plain_models as pm


def test_derived_rgb_pixelcnn_is_causal_and_its_step_matches_full():
    torch.manual_seed(0)
    model = derive(pm.PixelCNN(colours=3, levels=4, hidden=6, blocks=1), Adapter(3, 4, output="channels*levels"), 5, 5)
    assert audit_model(model, (3, 5, 5)).violations == 0
    assert audit(model) <= 1e-5


def test_a_wrong_cache_is_refused_naming_the_conv_that_diverged():
    torch.manual_seed(0)
    model = derive(pm.PixelCNN(colours=1, levels=5, hidden=4, blocks=2), Adapter(1, 5, output="channels*levels"),
                   6, 6, audit_images=0)
    second = [g for g in model.analysis.groups if g.name == "net_4"][0]  # the second 3x3 Mask B block
    grp = model.analysis.groups[second]
    grp.kernels[grp.inputs[0]][:, :, 6 - 1, 6] += 0.5  # its tap on the row above: the step path now disagrees
    with pytest.raises(DeriveError, match=r"node 'net_4' \(net\.4 \(MaskedConv2d\)\) diverged"):
        audit(model)


def test_layout_and_input_adapters_agree():
    torch.manual_seed(0)
    module = pm.PixelCNN(colours=1, levels=6, hidden=4, blocks=1)
    x = torch.randint(0, 6, (2, 1, 4, 4))
    a = derive(module, Adapter(1, 6, output="channels*levels"), 4, 4, audit_images=0)
    b = derive(module, Adapter(1, 6, output="levels,channels"), 4, 4, audit_images=0)
    lp = a.log_prob(x)
    assert torch.allclose(lp, b.log_prob(x)) and lp.shape == (2, 1, 4, 4) and bool((lp <= 0).all())
    onehot = Adapter(1, 6, input="onehot").encode(x)
    assert onehot.shape == (2, 6, 4, 4) and torch.equal(onehot.argmax(1, keepdim=True), x)
