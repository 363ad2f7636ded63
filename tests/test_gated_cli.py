"""`pixelrt` with a label-conditional Gated PixelCNN: train --condition label -> export -> sample --label
-> eval -> parity, on a tiny labelled .npz; and the label errors the CLI gives."""
import json

import numpy as np
import pytest
from PIL import Image

from pixelrt.cli import main


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("gated-cli")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 48)
    x = rng.integers(0, 4, (48, 1, 4, 4)).astype(np.uint8)
    x[:, 0, 0, 0] = y  # the label shows in the first pixel: something to learn
    np.savez(d / "tiny.npz", x=x, labels=y, levels=np.array(4))
    np.savez(d / "unlabelled.npz", x=x, levels=np.array(4))
    return d


@pytest.fixture(scope="module")
def bundle(workdir):
    ckpt, out = workdir / "ckpt", workdir / "bundle"
    assert main(["train", "--model", "gated", "--condition", "label", "--data", str(workdir / "tiny.npz"),
                 "-o", str(ckpt), "--epochs", "2", "--set", "hidden=4", "--set", "layers=2",
                 "--set", "head_hidden=4", "--set", "input_kernel=3", "--no-progress"]) == 0
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    assert meta["family"] == "gated" and meta["config"]["num_classes"] == 3
    assert main(["export", str(ckpt), "-o", str(out), "--reference", "3"]) == 0
    return ckpt, out


def test_sample_one_label_and_one_grid_row_per_label(bundle, workdir, capsys):
    _, out = bundle
    npz, png = workdir / "s.npz", workdir / "s.png"
    assert main(["sample", str(out), "-n", "6", "--label", "0-2", "-o", str(png), "--npz", str(npz),
                 "--no-progress"]) == 0
    with np.load(npz) as z:
        assert list(z["label"]) == [0, 0, 1, 1, 2, 2]
    grid = np.asarray(Image.open(png))
    assert grid.shape[0] > grid.shape[1]  # 3 rows of 2: one row per label
    assert main(["sample", str(out), "-n", "2", "--label", "1", "-o", str(png), "--no-progress"]) == 0


@pytest.mark.parametrize("argv,message", [
    ([], "label-conditional; pass --label"),
    (["--label", "3"], "0..2"),
    (["--label", "0,1,2", "-n", "4"], "multiple of 3"),
    (["--label", "x"], "class index"),
])
def test_sample_label_errors(bundle, workdir, capsys, argv, message):
    _, out = bundle
    argv = ["sample", str(out), "-o", str(workdir / "e.png"), "--no-progress"] + (argv if "-n" in argv else argv + ["-n", "3"])
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_eval_and_parity_use_the_data_sets_labels(bundle, workdir, capsys):
    ckpt, out = bundle
    assert main(["eval", str(out), "--data", str(workdir / "tiny.npz")]) == 0
    assert "bits/dim" in capsys.readouterr().out
    assert main(["parity", str(ckpt), "--bundle", str(out), "-n", "4", "--samples", "3", "--teacher", "2",
                 "--no-progress"]) == 0
    assert "step vs full conditionals" in capsys.readouterr().out
    assert main(["parity", str(ckpt), "--receptive-field", "4x4"]) == 0  # exits 1 on a causality violation
    assert "gated (this checkpoint)" in capsys.readouterr().out


def test_train_condition_label_needs_labels(workdir, capsys):
    code = main(["train", "--model", "gated", "--condition", "label", "--data", str(workdir / "unlabelled.npz"),
                 "-o", str(workdir / "x"), "--epochs", "1"])
    assert code == 2 and "has no labels" in capsys.readouterr().err
    code = main(["train", "--model", "pixelcnn", "--condition", "label", "--data", str(workdir / "tiny.npz"),
                 "-o", str(workdir / "y"), "--epochs", "1"])
    assert code == 2 and "cannot be label-conditioned" in capsys.readouterr().err
