"""The `pixelrt` command on a PixelVAE end to end: train --model pixelvae -> export -> info -> sample ->
interpolate -> eval --iwae -> parity, and what does not apply to it refused."""
import json

import numpy as np
import pytest
from PIL import Image

from pixelrt.cli import main

TINY = ["--set", "hidden=4", "--set", "dense=8", "--set", "latent=2", "--set", "downsample=1",
        "--set", "pixel_hidden=4", "--set", "head_hidden=4", "--set", "pixel_layers=2", "--set", "input_kernel=3",
        "--set", "free_bits=0.25"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("pixelvae-cli")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (60, 1, 4, 5)).astype(np.uint8)
    x[:, :, :, 0] = 0
    np.savez(d / "tiny.npz", x=x, levels=np.array(4))
    assert main(["train", "--model", "pixelvae", "--data", str(d / "tiny.npz"), "-o", str(d / "ckpt"), "--epochs",
                 "2", *TINY, "--no-progress"]) == 0
    assert main(["export", str(d / "ckpt"), "-o", str(d / "bundle"), "--reference", "4"]) == 0
    return d


def test_train_records_the_family_and_its_defaults(run):
    meta = json.loads((run / "ckpt" / "checkpoint.json").read_text())
    assert meta["family"] == "pixelvae" and meta["config"]["free_bits"] == 0.25
    assert (meta["config"]["height"], meta["config"]["width"]) == (4, 5)
    assert meta["training"]["config"]["weight_decay"] == 0.0 and len(meta["training"]["history"]) == 2


def test_info_sample_interpolate_eval_parity(run, capsys):
    b = str(run / "bundle")
    data = ["--data", str(run / "tiny.npz")]  # a bundle never makes pixelrt open the data path it records
    assert main(["info", b]) == 0
    out = capsys.readouterr().out
    assert "kind pixelvae: latent 2" in out and "checksums verified" in out
    assert "pixelcnn/row.onnx" in out and "ring-row/row state tensors" in out
    png, npz = run / "s.png", run / "s.npz"
    assert main(["sample", b, "-n", "5", "-o", str(png), "--npz", str(npz), "--no-progress"]) == 0
    with np.load(npz) as z:
        assert z["images"].shape == (5, 1, 4, 5) and z["images"].max() < 4 and z["z"].shape == (5, 2)
    assert np.asarray(Image.open(png)).ndim == 2
    assert main(["interpolate", b, "--pair", "0", "3", "--steps", "6", "-o", str(run / "i.png"), *data]) == 0
    assert "one shared step-loop noise" in capsys.readouterr().out
    assert main(["eval", b, "--iwae", "10", *data]) == 0
    out = capsys.readouterr().out
    assert "IWAE-10" in out and float(out.split("vs export time: ")[1].split()[0]) <= 1e-4
    js = run / "parity.json"
    assert main(["parity", str(run / "ckpt"), "--bundle", b, "--iwae", "10", "-n", "6", "--samples", "3",
                 "--json", str(js), "--no-progress"]) == 0
    report = json.loads(js.read_text())
    assert report["ok"] and any(r["check"].startswith("p(x|z): step vs full") for r in report["rows"])


def test_what_does_not_apply_is_refused(run, capsys):
    assert main(["sample", str(run / "bundle"), "-n", "1", "--mean"]) == 2
    assert "no closed-form mean" in capsys.readouterr().err
    assert main(["interpolate", str(run / "bundle"), "--pair", "0", "99", "--data", str(run / "tiny.npz")]) == 2
    assert "out of range" in capsys.readouterr().err
