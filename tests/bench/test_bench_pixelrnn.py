"""PixelRNN bench: runs end to end on tiny specs and reports naive and cached rows for each runtime."""
import pytest

from pixelrt.errors import PixelrtError
from pixelrt.bench.autoregressive import run_rnn_bench
from pixelrt.bench.specs import rnn_spec as RNNBenchSpec
from pixelrt.bundle import ImageSpec


@pytest.mark.parametrize("family", ["diagbilstm"])  # the path with a per-row graph; rowlstm's is a subset
def test_bench_times_naive_and_cached_sampling(family):
    spec = RNNBenchSpec(f"tiny-{family}", family, dict(channels=1, levels=5, hidden=4, state=2, layers=1,
                                                        head_hidden=4), ImageSpec(1, 3, 4, 5))
    lines = []
    records = run_rnn_bench(family, [1, 2], naive_rows=1, rows=2, spec=spec, log=lines.append)
    assert [(r["runtime"], r["method"], r["batch"]) for r in records] == [
        ("torch", "naive", 1), ("torch", "cached", 1), ("ort", "cached", 1),
        ("torch", "naive", 2), ("torch", "cached", 2), ("ort", "cached", 2)]
    assert all(r["ms_per_image"] > 0 for r in records)
    assert "vs naive" in lines[-1]


def test_bench_rejects_bad_arguments():
    with pytest.raises(PixelrtError, match="unknown PixelRNN bench model"):
        run_rnn_bench("nope", [1])
    with pytest.raises(PixelrtError, match="positive"):
        run_rnn_bench("rowlstm", [0])
