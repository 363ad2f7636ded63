"""`pixelrt train/export/sample/eval/parity --model multiscale` end to end on a tiny data set."""
import json

import numpy as np
import pytest

from pixelrt.cli import main
from pixelrt.bundle import load_bundle

TINY = ["--set", "hidden=4", "--set", "state=2", "--set", "layers=1", "--set", "head_hidden=4",
        "--set", "up_channels=4", "--set", "input_kernel=3"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("mscli")
    x = np.random.default_rng(0).integers(0, 4, (40, 1, 4, 4)).astype(np.uint8)
    x[:, :, :, :2] = 0
    np.savez(d / "tiny.npz", x=x, levels=np.array(4))
    data = ["--data", str(d / "tiny.npz"), "--test-fraction", "0.25"]
    assert main(["train", *data, "--model", "multiscale", "-o", str(d / "ckpt"), "--epochs", "2", *TINY,
                 "--no-progress"]) == 0
    assert main(["export", str(d / "ckpt"), "-o", str(d / "bundle"), "--reference", "3"]) == 0
    return d, data


def test_export_writes_one_multiscale_bundle(run):
    d, _ = run
    b = load_bundle(d / "bundle")
    assert b.kind == "multiscale" and b.manifest.parts["stage2"].context == "bias"
    assert b.manifest.validation["full_max_dbpd"] <= 1e-5


def test_sample_and_eval(run, capsys):
    d, data = run
    assert main(["sample", str(d / "bundle"), "-n", "3", "-o", str(d / "s.png"), "--npz", str(d / "s.npz"),
                 "--no-progress"]) == 0
    with np.load(d / "s.npz") as z:
        assert z["images"].shape == (3, 1, 4, 4) and z["coarse"].shape == (3, 1, 2, 2)
        assert z["images"].max() < 4
    assert main(["eval", str(d / "bundle"), *data]) == 0
    out = capsys.readouterr().out
    assert "bits/dim" in out and "stage 1" in out


def test_parity_and_receptive_field(run, capsys):
    d, data = run
    assert main(["parity", str(d / "ckpt"), *data, "--bundle", str(d / "bundle"), "-n", "6", "--teacher", "2",
                 "--samples", "2", "--json", str(d / "p.json"), "--no-progress"]) == 0
    rep = json.loads((d / "p.json").read_text())
    assert rep["ok"] and len(rep["rows"]) == 4 and all(r["max"] <= r["budget"] for r in rep["rows"])
    assert main(["parity", str(d / "ckpt"), *data, "--receptive-field"]) == 0
    out = capsys.readouterr().out
    assert "stage 2 (coarse image fixed)" in out


def test_bench_reports_naive_and_cached_sampling():
    from pixelrt.bench.composite import format_composite_report as format_ms_report, run_ms_bench
    from pixelrt.bundle import ImageSpec

    recs = run_ms_bench([2], image=ImageSpec(1, 4, 4, 4), config=dict(channels=1, levels=4, hidden=4, state=2,
                        layers=1, head_hidden=4, up_channels=4, input_kernel=3), log=lambda s: None)
    assert [(r["method"], r["batch"]) for r in recs] == [("naive", 2), ("cached", 2)]
    assert all(r["ms_per_image"] > 0 for r in recs)
    assert "vs naive" in format_ms_report(recs)
