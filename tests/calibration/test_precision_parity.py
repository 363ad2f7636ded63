"""`pixelrt parity` with several bundles: one runtime x precision table against FP32 PyTorch."""
from __future__ import annotations

import json

import numpy as np

from pixelrt.calibration.measure import FP16_BPD_BUDGET, FP32_BPD_BUDGET
from pixelrt.parity.precision import run_precision_parity

from .conftest import images


def test_precision_table_rows_and_budgets(grey_fp16):
    model, fp32, res = grey_fp16
    x = images(fp32, 16, 9)
    report = run_precision_parity(model, [fp32, res.bundle], x, samples=3, teacher=3, log=lambda s: None)
    rows = {(r.runtime, r.precision): r for r in report.rows}
    assert set(rows) == {("torch", "fp32"), ("torch", "fp16"), ("ort", "fp32"), ("ort", "fp16")}
    ort32, ort16 = rows["ort", "fp32"], rows["ort", "fp16"]
    assert ort32.budget == FP32_BPD_BUDGET and ort16.budget == FP16_BPD_BUDGET
    assert abs(ort32.delta_bpd) <= FP32_BPD_BUDGET and ort32.max_dlogp < 1e-4 and ort32.step_vs_full < 1e-5
    assert ort32.sample_agreement >= 0.9
    assert 0 < ort16.max_dlogp and ort16.step_vs_full <= FP16_BPD_BUDGET
    assert rows["torch", "fp16"].max_dlogp > 0  # real half arithmetic differs from FP32
    assert rows["torch", "fp32"].delta_bpd == 0.0
    table = report.table()
    for word in ("runtime", "precision", "bits/dim", "d vs fp32 torch", "step vs full", "samples same"):
        assert word in table
    d = json.loads(json.dumps(report.as_dict()))
    assert d["ok"] == report.ok and len(d["rows"]) == 4


def test_precision_table_flags_a_miss(grey_fp16):
    model, fp32, res = grey_fp16
    report = run_precision_parity(model, [res.bundle], images(fp32, 4, 9), samples=2, teacher=2, log=lambda s: None)
    row = next(r for r in report.rows if r.runtime == "ort")
    row.budget = abs(row.delta_bpd) / 2  # pretend a tighter budget: the row and the report must fail
    assert not row.ok and not report.ok
    import pytest

    from pixelrt.errors import ParityError

    with pytest.raises(ParityError, match="ort fp16"):
        report.raise_on_miss()
    assert np.isfinite(row.bits_per_dim)
