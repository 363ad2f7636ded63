"""`pixelrt bench` rows for FP16 and INT8 step sampling beside FP32 (ratios, never timing asserts),
and what ORT's CPU provider really executes for each precision."""
from __future__ import annotations

from pixelrt.calibration.ort_inspect import executed_precision
from pixelrt.bench.autoregressive import run_bench
from pixelrt.bench.specs import BenchSpec
from pixelrt.bundle import ImageSpec


def test_bench_reports_reduced_precision_ratios():
    spec = BenchSpec("tiny", dict(channels=1, levels=5, hidden=4, blocks=1, head_hidden=4), ImageSpec(1, 3, 4, 5))
    lines = []
    records = run_bench([2], naive_rows=1, rows=2, spec=spec, log=lines.append, precisions=("fp32", "fp16", "int8"))
    cached = {(r["runtime"], r["precision"]) for r in records if r["method"] == "cached"}
    assert cached == {("torch", "fp32"), ("ort", "fp32"), ("ort-fp16", "fp16"), ("ort-int8", "int8")}
    assert all(r["ms_per_image"] > 0 for r in records)
    report = "\n".join(lines)
    assert "fp16 takes" in report and "int8 takes" in report and "the fp32 time (same run)" in report
    assert "ORT CPU's optimized fp16 step graph runs its GEMMs as" in report


def test_ort_cpu_runs_fp16_gemms_in_fp32_and_int8_with_int8_weights(grey_fp16, tmp_path):
    """The optimized graph keeps no FP16 weights on this CPU provider: casts, FP32 arithmetic."""
    _, fp32, res = grey_fp16
    fp16 = executed_precision(res.bundle.graph_path("step"))
    assert fp16["fp16_initializers"] == 0
    assert all("float16" not in k for k in fp16["gemm_nodes"])
    ref = executed_precision(fp32.graph_path("step"))
    assert fp16["casts"] > ref["casts"]
