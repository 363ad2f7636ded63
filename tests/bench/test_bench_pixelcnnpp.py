"""`pixelrt bench --model pp32` (the naive-graph measurement) through a tiny PixelCNN++: one record per batch,
naive graph and cached loop both in ORT, beside the published speed-ups. Slow (two exports): -m slow."""
import json

import pytest

from pixelrt.bench.run import BenchOptions, run_benchmark
from pixelrt.bench.specs import NAIVE_GRAPH, BenchSpec
from pixelrt.bundle import ImageSpec


@pytest.mark.slow
def test_naive_graph_bench_records(tmp_path):
    spec = BenchSpec("pp-tiny", dict(channels=3, levels=8, filters=4, resnets=1, resolutions=2, mixtures=2,
                                     dropout=0.0), ImageSpec(3, 4, 4, 8), family="pixelcnnpp", measure=NAIVE_GRAPH,
                     batches="1", rows=2)
    lines = []
    records = run_benchmark(spec, [1, 4], BenchOptions(json_path=str(tmp_path / "pp.json"), log=lines.append))
    assert [r["batch"] for r in records] == [1, 4] and json.loads((tmp_path / "pp.json").read_text()) == records
    assert all(r["naive_ms_per_image"] > 0 and r["cached_ms_per_image"] > 0 for r in records)
    assert records[0]["rows_timed"] == 2 and records[0]["rows_cover_every_level"]
    assert [r["published_gpu_speedup"] for r in records] == [2.0, 6.0]
    assert "published (GPU)" in lines[-2] and "2 of 4 rows timed" in lines[-2]
