"""The `pixelrt` command on a VAE end to end: train --model vae -> export -> info -> sample [--mean] ->
interpolate -> eval --iwae -> parity, and the kind dispatch refusing what does not apply."""
import json

import numpy as np
import pytest
from PIL import Image

from pixelrt.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("vae-cli")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (60, 1, 4, 5)).astype(np.uint8)
    x[:, :, :, 0] = 0
    np.savez(d / "tiny.npz", x=x, levels=np.array(4))
    code = main(["train", "--model", "vae", "--data", str(d / "tiny.npz"), "-o", str(d / "ckpt"), "--epochs", "3",
                 "--set", "hidden=4", "--set", "dense=8", "--set", "latent=2", "--set", "downsample=1",
                 "--no-progress"])
    assert code == 0
    assert main(["export", str(d / "ckpt"), "-o", str(d / "bundle"), "--reference", "4"]) == 0
    return d


def test_train_records_the_elbo_and_the_geometry(run):
    meta = json.loads((run / "ckpt" / "checkpoint.json").read_text())
    assert meta["family"] == "vae" and (meta["config"]["height"], meta["config"]["width"]) == (4, 5)
    hist = meta["training"]["history"]
    assert len(hist) == 3 and meta["training"]["config"]["weight_decay"] == 0.0  # the family's default
    assert meta["training"]["test_bits_per_dim"] == min(h["test_bits_per_dim"] for h in hist)


def test_info_sample_and_interpolate(run, capsys):
    b = str(run / "bundle")
    data = ["--data", str(run / "tiny.npz")]  # a bundle never makes pixelrt open the data path it records
    assert main(["info", b]) == 0
    out = capsys.readouterr().out
    assert "kind vae: latent 2" in out and "checksums verified" in out
    for extra in ([], ["--mean"]):
        png, npz = run / f"s{len(extra)}.png", run / f"s{len(extra)}.npz"
        assert main(["sample", b, "-n", "5", "-o", str(png), "--npz", str(npz), "--no-progress", *extra]) == 0
        with np.load(npz) as z:
            assert z["images"].shape == (5, 1, 4, 5) and z["images"].max() < 4
        assert np.asarray(Image.open(png)).ndim == 2
    assert main(["interpolate", b, "--pair", "0", "3", "--steps", "6", "-o", str(run / "i.png"), *data]) == 0
    assert "images 0 -> 3 in 6 steps" in capsys.readouterr().out
    grid = np.asarray(Image.open(run / "i.png"))
    assert grid.shape[1] > 8 * grid.shape[0] // 2  # one row of 8 images


def test_eval_reports_the_training_elbo_and_tighter_iwae(run, capsys):
    assert main(["eval", str(run / "bundle"), "--iwae", "10", "--data", str(run / "tiny.npz")]) == 0
    out = capsys.readouterr().out
    elbo = float(out.split("ELBO")[1].split("bits/dim")[0])
    iwae = {k: float(out.split(f"IWAE-{k}")[1].split("bits/dim")[0]) for k in (1, 10)}
    assert iwae[10] < elbo + 0.02  # bits/dim: a tighter (smaller) bound, within noise of a 12-image split
    drift = float(out.split("vs export time: ")[1].split()[0])
    assert drift <= 1e-4


def test_parity_on_the_checkpoint_and_bundle(run, capsys):
    js = run / "parity.json"
    assert main(["parity", str(run / "ckpt"), "--bundle", str(run / "bundle"), "--iwae", "10", "-n", "8",
                 "--json", str(js), "--no-progress"]) == 0
    report = json.loads(js.read_text())
    assert report["ok"] and any(r["check"] == "IWAE-10 per image: PyTorch vs ORT" for r in report["rows"])


def test_kind_dispatch_refuses_what_does_not_apply(run, grey_bundle, capsys):
    assert main(["sample", str(grey_bundle[1].root), "-n", "1", "--mean"]) == 2
    assert "--mean applies to VAE bundles" in capsys.readouterr().err
    assert main(["interpolate", str(grey_bundle[1].root), "--data", str(run / "tiny.npz")]) == 2
    assert "needs a VAE or PixelVAE bundle" in capsys.readouterr().err
    assert main(["interpolate", str(run / "bundle"), "--pair", "0", "99", "--data", str(run / "tiny.npz")]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["eval", str(run / "bundle"), "--iwae", "0", "--data", str(run / "tiny.npz")]) == 2
    assert "1..100000" in capsys.readouterr().err
