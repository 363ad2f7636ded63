"""Plain-PyTorch PixelCNNs (tests/models/derive/plain_models.py: torch.nn only) export through derived step
graphs: the derivation's own audit, then the one exporter's validation (ORT vs PyTorch at an untraced batch,
teacher-forced ORT step loop vs full graph, sampled log p vs full log-likelihood, causality probe)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import pixelrt
from pixelrt.export.validator import BPD_BUDGET, LOGP_BUDGET
from pixelrt.models.derive import Adapter, DeriveError, derive
from tests.models.derive import plain_models as pm

CHECKS = ("full_max_dbpd", "step_max_dlogp", "step_vs_full_max_dlogp", "step_vs_full_max_dbpd",
          "sampled_vs_full_max_dbpd", "causality_max_dlogp")


def _export(tmp_path, module, adapter, shape, context=None):
    C, H, W = shape
    rng = np.random.default_rng(0)
    data = rng.integers(0, adapter.levels, (5, C, H, W)).astype(np.uint8)
    result = pixelrt.export_model(module, image=(C, H, W, adapter.levels), out=tmp_path / "b", data=data,
                                  adapter=adapter, log=lambda m: None, context=context)
    rows = {r.key: r for r in result.report.rows}
    return result, rows


def _within_budgets(rows):
    budgets = {"full_max_dbpd": BPD_BUDGET, "step_max_dlogp": LOGP_BUDGET}
    for key, row in rows.items():
        if row.budget is not None:
            assert (row.min_value >= row.budget) if row.higher_is_better else (row.max <= row.budget), key
    for key, budget in budgets.items():
        assert rows[key].max <= budget, key
    assert set(CHECKS) <= set(rows), sorted(rows)  # every check ran: ORT vs PyTorch, step vs full, sampled, causal


def test_masked_pixelcnn_grey_derives_ring_caches_and_exports(tmp_path):
    torch.manual_seed(0)
    module = pm.PixelCNN(colours=1, levels=17, hidden=8, blocks=2)
    result, rows = _export(tmp_path, module, Adapter(1, 17, output="channels*levels"), (1, 6, 6))
    _within_budgets(rows)
    states = {s.name: s for s in result.bundle.state}
    # the 7x7 Mask A conv caches the image: 3 rows above + this one, 3 columns each side; the 3x3 Mask B
    # blocks share one stacked ring of 2 rows, padded by 1 (not the whole image: a cached step, not naive)
    assert (states["cache_0"].rows, states["cache_0"].pad, states["cache_0"].shape[1]) == (4, 3, 1)
    assert (states["cache_1"].rows, states["cache_1"].pad, states["cache_1"].shape[1]) == (2, 1, 2)
    assert result.bundle.step_schedule.row_graph is None


def test_masked_pixelcnn_rgb_channel_groups(tmp_path):
    torch.manual_seed(1)
    module = pm.PixelCNN(colours=3, levels=8, hidden=12, blocks=1)
    _, rows = _export(tmp_path, module, Adapter(3, 8, output="channels*levels"), (3, 6, 6))
    _within_budgets(rows)


def test_gated_pixelcnn_label_conditioned_runs_vertical_stack_per_row(tmp_path):
    torch.manual_seed(2)
    module = pm.GatedPixelCNN(levels=17, classes=10, hidden=6, layers=2)
    adapter = Adapter(1, 17, output="channels,levels", context={"label": 10})
    labels = np.arange(5) % 10
    result, rows = _export(tmp_path, module, adapter, (1, 6, 6), context={"label": labels})
    _within_budgets(rows)
    assert result.bundle.step_schedule.row_graph == "row"
    # per layer the vertical pre-activation (its down-shifted link, 1 row) and, but for the last, the gated
    # vertical output (the next vertical conv reads its row above)
    assert [s.update for s in result.bundle.state].count("row") == 3
    assert "row_max_dnew_rows_0" in rows


def test_residual_pixelcnn_onehot_rgb_with_1x1_head(tmp_path):
    torch.manual_seed(3)
    module = pm.ResidualPixelCNN(colours=3, levels=4, hidden=6, blocks=1)
    _, rows = _export(tmp_path, module, Adapter(3, 4, input="onehot", output="channels*levels"), (3, 5, 5))
    _within_budgets(rows)


def test_unsupported_op_is_refused_naming_it():
    with pytest.raises(DeriveError, match=r"node 'mean' \(\.mean\(\)\)"):
        derive(pm.GlobalContext(17), Adapter(1, 17), 8, 8)


def test_non_causal_conv_is_refused_naming_it():
    with pytest.raises(DeriveError, match=r"node 'conv' \(conv \(Conv2d\)\) reads rows below"):
        derive(pm.Unmasked(17), Adapter(1, 17), 8, 8)
