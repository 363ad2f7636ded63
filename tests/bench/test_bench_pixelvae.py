"""`pixelrt bench --model pvae28` through a tiny PixelVAE: naive and cached records per batch, ratios in one table."""
import pytest

from pixelrt.errors import PixelrtError
from pixelrt.bench.composite import run_pixelvae_bench
from pixelrt.bundle import ImageSpec

TINY = dict(latent=2, hidden=4, downsample=1, dense=8, pixel_hidden=4, head_hidden=4, pixel_layers=2, input_kernel=3)


def test_pixelvae_bench_records_naive_and_cached_per_batch():
    lines = []
    records = run_pixelvae_bench([1, 3], naive_rows=2, image=ImageSpec(1, 4, 5, 6), overrides=TINY, log=lines.append)
    assert [(r["method"], r["batch"]) for r in records] == [("naive", 1), ("cached", 1), ("naive", 3), ("cached", 3)]
    assert all(r["ms_per_image"] > 0 for r in records)
    assert all(0 < r["features_share"] < 1 for r in records if r["method"] == "cached")
    table = lines[-1]
    assert "vs naive" in table and table.count("1.0x") >= 2  # naive rows are the reference
    with pytest.raises(PixelrtError, match="positive"):
        run_pixelvae_bench([0], image=ImageSpec(1, 4, 5, 6), overrides=TINY)
