"""The receptive-field-window fallback (adapter step="window"): the module itself on the window around
each position, for a causal conv net the per-layer derivation does not cover."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import pixelrt
from pixelrt.models.derive import Adapter, DeriveError, derive
from tests.models.derive import plain_models as pm


def test_window_fallback_exports_what_per_layer_derivation_refuses(tmp_path):
    torch.manual_seed(4)
    module = pm.PreShiftedGated(levels=9)
    with pytest.raises(DeriveError, match=r"the output node 'out' \(out \(Conv2d\)\) reads the rest of the current "
                                          r"row.*step='window'"):
        derive(module, Adapter(1, 9), 7, 7)
    adapter = Adapter(1, 9, step="window")
    model = derive(module, adapter, 7, 7)
    assert model.field == (3, 3, 2)  # rows above, columns left and right the output reads
    data = np.random.default_rng(0).integers(0, 9, (5, 1, 7, 7)).astype(np.uint8)
    result = pixelrt.export_model(module, image=(1, 7, 7, 9), out=tmp_path / "b", data=data, adapter=adapter,
                                  log=lambda m: None)
    rows = {r.key: r for r in result.report.rows}
    assert rows["step_vs_full_max_dlogp"].max <= 1e-4 and rows["sampled_vs_full_max_dbpd"].max <= 1e-5
    assert rows["causality_max_dlogp"].max == 0.0 and rows["full_max_dbpd"].max <= 1e-5
    ring, = result.bundle.state
    assert ring.rows == 4 and ring.shape[-2:] == (7, 1)  # the last 4 image rows, not the image


def test_window_fallback_refuses_a_global_op():
    with pytest.raises(DeriveError, match="reads a later column of its row: it is not causal"):
        derive(pm.GlobalContext(9), Adapter(1, 9, step="window"), 6, 6)
