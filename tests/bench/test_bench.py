"""pixelrt bench: FLOP counts against hand counts and the step module's weights, and the
record format of a run on a tiny model. Never asserts on timing (bench is measurement)."""
from __future__ import annotations

import json

import pytest

from pixelrt.bench.autoregressive import run_bench
from pixelrt.bench.flops import dense_flops_per_pixel, step_flops_per_pixel, wave_flops_per_pixel
from pixelrt.bench.specs import BenchSpec
from pixelrt.models import PixelCNN, PixelCNNConfig
from pixelrt.bundle import ImageSpec

TINY = PixelCNNConfig(channels=1, levels=3, hidden=4, blocks=1, input_kernel=3, block_kernel=3, head_hidden=2)


def test_step_flops_hand_count():
    # input conv: centre 1*4 + window 2 rows * 3 taps * 1 * 4 = 28 MACs
    # block (h=2): reduce 4*2 + centre 2*2 + window 2*3*2*2 + expand 2*4 = 8 + 4 + 24 + 8 = 44
    # head: 4*2 + 2*1*3 = 14                       -> 86 MACs, 172 FLOPs, one sub-step per pixel
    assert step_flops_per_pixel(TINY) == 172
    # dense: 3*3*1*4 + (4*2 + 3*3*2*2 + 2*4) + 14 = 36 + 52 + 14 = 102 MACs
    assert dense_flops_per_pixel(TINY) == 204


def _step_weight_macs(cfg: PixelCNNConfig) -> int:
    """MACs of one step, read off the step module: every matmul weight element is used once per image."""
    step = PixelCNN(cfg).step_module(ImageSpec(cfg.channels, 4, 4, cfg.levels))
    return step.weight_macs()


@pytest.mark.parametrize("cfg", [
    TINY,
    PixelCNNConfig(channels=1, levels=256, hidden=64, blocks=8, head_hidden=64),
    PixelCNNConfig(channels=3, levels=4, hidden=12, blocks=2, input_kernel=5, block_kernel=3, head_hidden=6),
])
def test_step_flops_match_step_module(cfg):
    assert step_flops_per_pixel(cfg) == 2 * _step_weight_macs(cfg) * cfg.channels


def test_step_flops_scale_with_sub_steps():
    rgb = PixelCNNConfig(channels=3, levels=3, hidden=6, blocks=1, input_kernel=3, block_kernel=3, head_hidden=3)
    C, w, h, m, L = 3, 6, 3, 3, 3
    macs = (C * w + 2 * 3 * C * w) + (w * h + h * h + 2 * 3 * h * h + h * w) + (w * m + m * C * L)
    assert step_flops_per_pixel(rgb) == 2 * macs * 3  # each of the 3 sub-pixel steps runs the whole net


def test_run_bench_records(tmp_path):
    spec = BenchSpec("tiny", dict(channels=1, levels=5, hidden=4, blocks=1, head_hidden=4, input_kernel=3),
                     ImageSpec(1, 4, 5, 5))
    out = tmp_path / "bench.json"
    lines = []
    returned = run_bench([1, 2], json_path=out, naive_rows=2, rows=3, spec=spec, log=lines.append)
    records = json.loads(out.read_text())
    assert records == json.loads(json.dumps(returned))
    assert sorted((r["method"], r["runtime"], r["batch"]) for r in records) == sorted(
        (m, rt, b) for m, rt in [("naive", "torch"), ("cached", "torch"), ("cached", "ort"), ("wavefront", "ort")]
        for b in (1, 2))
    cfg = PixelCNNConfig(**spec.config)
    required = {"model", "runtime", "method", "batch", "ms_per_image", "flops_per_pixel", "peak_fraction",
                "dense_flops_per_pixel", "extrapolated_from_rows", "peak_gflops", "timestamp", "torch",
                "onnxruntime", "cpu_count"}
    for r in records:
        assert required <= set(r), required - set(r)
        assert r["model"] == "tiny"
        assert r["ms_per_image"] > 0 and r["peak_fraction"] > 0 and r["peak_gflops"] > 0
        assert r["dense_flops_per_pixel"] == dense_flops_per_pixel(cfg)
        if r["method"] == "naive":  # the peak re-measured right after each step-loop row, against its own GFLOP/s
            assert r["peak_after_gflops"] is None and r["peak_fraction_after"] is None
        else:
            assert r["peak_after_gflops"] > 0 and r["peak_fraction_after"] == r["gflops"] / r["peak_after_gflops"]
            # ONNX Runtime's own MatMul peak at the same threads, at the start and right after the row
            assert r["ort_peak_gflops"] > 0 and r["ort_peak_after_gflops"] > 0
            assert r["ort_peak_fraction"] == pytest.approx(r["gflops"] / r["ort_peak_gflops"], rel=1e-3)
            assert r["ort_peak_fraction_after"] == r["gflops"] / r["ort_peak_after_gflops"]
        if r["method"] in ("cached", "wavefront"):
            want = step_flops_per_pixel(cfg) if r["method"] == "cached" else wave_flops_per_pixel(cfg)
            assert r["flops_per_pixel"] == want
            assert r["extrapolated_from_rows"] == 3
        else:
            assert r["flops_per_pixel"] == dense_flops_per_pixel(cfg) * 4 * 5
            assert r["extrapolated_from_rows"] == 2
    wave = [r for r in records if r["method"] == "wavefront"]
    model = PixelCNN(cfg)  # the wavefront graph skips exactly the masked taps: its weights are the FLOPs it runs
    w = model.wave_module(spec.image)
    s = w.step
    runs = (w.w_input.numel() + s.w_centre.numel() + s.blocks * (s.w_reduce[0].numel() + s.half * s.half
            + w.w_blocks[0, :, :s.half].numel() + s.half * s.w_expand.shape[2]) + s.w_head_hidden.numel()
            + s.w_head_out.numel())
    assert 2 * runs == wave_flops_per_pixel(cfg) < step_flops_per_pixel(cfg) == 2 * s.weight_macs()
    for r in wave:  # the bundle's wavefront loop: the raster loop's samples, in fewer calls (lag 2 on 5 columns)
        assert r["lag"] == 2 and r["calls_per_image"] == 5 + 2 * 3 < 4 * 5
        assert r["same_images_as_cached"] == 1.0 and r["max_abs_logp_vs_cached"] < 1e-4
        assert r["us_per_call"] == pytest.approx(r["ms_per_image"] * r["batch"] * 1e3 / r["calls_per_image"])
    report = "\n".join(lines)
    assert "target: ORT wavefront >= 150x" in report and "wave graph:" in report
    assert "extrapolated" in report and "measured peak" in report and "ONNX Runtime's own MatMul" in report
    assert "faster than naive at batch 1" in report and "not measured (batch 64 not run)" in report
    assert not list(tmp_path.glob(".bench.json.*"))  # no temporary file left behind


def test_run_bench_full_height_is_not_extrapolated(tmp_path):
    spec = BenchSpec("tiny", dict(channels=3, levels=4, hidden=6, blocks=1, head_hidden=3), ImageSpec(3, 2, 3, 4))
    records = run_bench([1], naive_rows=5, spec=spec, log=lambda s: None)
    assert len(records) == 3
    assert all(r["extrapolated_from_rows"] is None for r in records)
    assert all(r["flops_per_pixel"] == step_flops_per_pixel(PixelCNNConfig(**spec.config))
               for r in records if r["method"] == "cached")


def test_run_bench_rejects_unknown_model():
    from pixelrt.errors import PixelrtError

    with pytest.raises(PixelrtError, match="unknown bench model"):
        run_bench([1], model="nope", log=lambda s: None)


def test_best_of_spans_cheap_runs_and_respects_the_budget():
    """A step loop's time is the min over its runs: cheap runs go on until they span ``span_s`` (a burst of
    load covers a handful of them, not a second's worth), never past ``most`` or ``budget_s``."""
    import time

    from pixelrt.bench.common import _best_of

    calls = []
    run = lambda: (calls.append(1), time.sleep(0.002))  # noqa: E731
    assert _best_of(run, 3, budget_s=10.0) >= 0.002 and len(calls) == 3
    calls.clear()
    _best_of(run, 3, budget_s=10.0, span_s=0.05, most=200)
    assert 3 < len(calls) <= 26  # past the 3 repeats, and stopped once 0.05 s of runs of at least 2 ms were spent
    calls.clear()
    _best_of(run, 3, budget_s=10.0, span_s=5.0, most=12)
    assert len(calls) == 12
    calls.clear()
    _best_of(run, 50, budget_s=0.02)
    assert len(calls) <= 11
