"""`pixelrt bench --model vae28` through a tiny spec: one record per runtime and batch, ratios in one table."""
from pixelrt.bench.decoder import run_vae_bench
from pixelrt.bench.specs import vae_spec as VaeBenchSpec

TINY = VaeBenchSpec("tiny", dict(channels=1, levels=8, height=6, width=6, latent=2, hidden=4, downsample=1,
                                 dense=8, likelihood="logistic"))


def test_vae_bench_records_images_per_second_and_ratios(tmp_path):
    lines = []
    records = run_vae_bench([1, 3], json_path=tmp_path / "b.json", spec=TINY, log=lines.append)
    assert [(r["runtime"], r["batch"]) for r in records] == [("torch", 1), ("ort", 1), ("torch", 3), ("ort", 3)]
    for r in records:
        assert r["images_per_second"] > 0 and abs(r["images_per_second"] * r["ms_per_call"] / 1e3 - r["batch"]) < 1e-6
    table = lines[-2]
    assert "vs torch" in table and table.count("1.00x") >= 2  # torch rows are the reference
    assert (tmp_path / "b.json").is_file()
