"""The `pixelrt` command end to end on a tiny data set: train -> export -> info -> sample -> eval -> parity."""
import json

import numpy as np
import pytest
from PIL import Image

from pixelrt.cli import main


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (60, 1, 4, 5)).astype(np.uint8)
    x[:, :, :, 0] = 0  # some structure so that training has something to learn
    np.savez(d / "tiny.npz", x=x, levels=np.array(4))
    return d


@pytest.fixture(scope="module")
def trained(workdir):
    ckpt = workdir / "ckpt"
    code = main(["train", "--data", str(workdir / "tiny.npz"), "-o", str(ckpt), "--epochs", "3",
                 "--test-fraction", "0.25", "--split-seed", "3",
                 "--set", "hidden=8", "--set", "blocks=1", "--set", "head_hidden=4", "--no-progress"])
    assert code == 0
    return ckpt


@pytest.fixture(scope="module")
def exported(trained, workdir):
    bundle = workdir / "bundle"
    assert main(["export", str(trained), "-o", str(bundle), "--reference", "4"]) == 0
    return bundle


def test_train_writes_a_checkpoint_with_history(trained):
    meta = json.loads((trained / "checkpoint.json").read_text())
    assert meta["family"] == "pixelcnn" and meta["config"]["hidden"] == 8
    hist = meta["training"]["history"]
    assert 1 <= len(hist) <= 3
    assert meta["training"]["test_bits_per_dim"] == min(h["test_bits_per_dim"] for h in hist)
    assert (trained / "weights.safetensors").stat().st_size > 0


def test_train_refuses_to_overwrite_without_force(trained, workdir, capsys):
    code = main(["train", "--data", str(workdir / "tiny.npz"), "-o", str(trained), "--epochs", "1"])
    assert code == 2
    assert "already exists" in capsys.readouterr().err


def test_info_and_sample_write_what_they_say(exported, workdir, capsys):
    assert main(["info", str(exported)]) == 0
    assert "checksums verified" in capsys.readouterr().out
    png, npz = workdir / "s.png", workdir / "s.npz"
    assert main(["sample", str(exported), "-n", "6", "--seed", "2", "-o", str(png), "--npz", str(npz),
                 "--no-progress"]) == 0
    assert "ms/image" in capsys.readouterr().out
    grid = np.asarray(Image.open(png))
    assert grid.ndim == 2 and grid.shape[0] > 4 * 2 and grid.shape[1] > 5 * 3
    with np.load(npz) as z:
        images = z["images"]
    assert images.shape == (6, 1, 4, 5) and images.max() < 4
    # same seed, same images
    assert main(["sample", str(exported), "-n", "6", "--seed", "2", "-o", str(png), "--npz", str(workdir / "t.npz"),
                 "--no-progress"]) == 0
    with np.load(workdir / "t.npz") as z:
        assert np.array_equal(z["images"], images)


def test_eval_reports_the_training_bits_per_dim(exported, trained, workdir, capsys):
    """Given the data file, eval uses the held-out split recorded at training time; without --data it asks for
    the file instead of opening the path the bundle records (a bundle never makes pixelrt read outside it)."""
    assert main(["eval", str(exported)]) == 2
    assert f"records its data set as '{workdir / 'tiny.npz'}'; pixelrt does not open paths a bundle names" \
        in capsys.readouterr().err
    assert main(["eval", str(exported), "--data", str(workdir / "tiny.npz")]) == 0
    out = capsys.readouterr().out
    bpd = float(out.split(" bits/dim")[0].split()[-1])
    meta = json.loads((trained / "checkpoint.json").read_text())
    assert meta["data"]["test_fraction"] == 0.25 and meta["data"]["test_images"] == 15
    assert bpd == pytest.approx(meta["training"]["test_bits_per_dim"], abs=1e-4)
    # another split of the same data gives another number: the recorded split was really used
    assert main(["eval", str(exported), "--data", str(workdir / "tiny.npz"), "--split-seed", "0"]) == 0
    other = float(capsys.readouterr().out.split(" bits/dim")[0].split()[-1])
    assert other != pytest.approx(bpd, abs=1e-4)


def test_parity_passes_and_writes_json(trained, exported, workdir, capsys):
    report = workdir / "parity.json"
    code = main(["parity", str(trained), "--bundle", str(exported), "-n", "8", "--samples", "3", "--teacher", "2",
                 "--json", str(report), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    doc = json.loads(report.read_text())
    assert doc["ok"] and len(doc["rows"]) >= 8
    assert "bits/dim per image: PyTorch vs ORT full" in out


def test_parity_against_another_models_bundle_exits_1(trained, tmp_path, capsys):
    """A bundle exported from different weights (same shape) must miss the budgets, not pass."""
    from pixelrt.export import export_bundle
    from pixelrt.models.checkpoint import load_checkpoint
    from pixelrt.bundle import ImageSpec

    model, _ = load_checkpoint(trained)
    other = type(model)(model.config)  # same architecture, fresh random weights
    x = np.zeros((2, 1, 4, 5), np.uint8)
    bundle = export_bundle(other.eval(), ImageSpec(1, 4, 5, 4), x, tmp_path / "other", log=lambda s: None).bundle
    code = main(["parity", str(trained), "--bundle", str(bundle.root), "-n", "4", "--samples", "2", "--teacher", "1",
                 "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    assert "MISS" in captured.out and "parity missed its budget" in captured.err


def test_help_explains_every_command(capsys):
    assert main(["--help"]) == 0  # argparse's exit becomes main's return value
    out = capsys.readouterr().out
    for cmd in ("train", "export", "sample", "eval", "parity", "bench", "demo", "info"):
        assert cmd in out


def test_parity_receptive_field_measures_the_blind_spot(trained, capsys):
    assert main(["parity", str(trained), "--receptive-field", "4x5"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("pixelcnn (this checkpoint)"))
    violations, coverage = int(line.split()[-2]), float(line.split()[-1])
    assert violations == 0 and 0.5 < coverage < 1.0  # PixelCNN's blind spot: part of the past is never read
    assert "." in out.split("inputs read by output pixel")[1]  # the map shows blind-spot pixels
    assert main(["parity", str(trained), "--receptive-field", "4by5"]) == 2
    assert "takes HxW" in capsys.readouterr().err


def test_trt_options_reach_the_backend_environment(monkeypatch, capsys):
    """--trt-profile / --no-tf32 set what runtime/backends.py reads for --runtime trt; a bad profile fails first."""
    import os

    from pixelrt.cli import build_parser
    from pixelrt.cli_common import apply_runtime_options

    monkeypatch.setenv("PIXELRT_TRT_TF32", "1")  # restored after the test
    monkeypatch.setenv("PIXELRT_TRT_PROFILE", "server")
    for cmd in (["sample", "b"], ["eval", "b"], ["bench"]):
        args = build_parser().parse_args([*cmd, "--no-tf32", "--trt-profile", "jetson-agx-orin"])
        apply_runtime_options(args)
        assert os.environ["PIXELRT_TRT_TF32"] == "0" and os.environ["PIXELRT_TRT_PROFILE"] == "jetson-agx-orin"
    assert main(["sample", "missing-bundle", "--runtime", "trt", "--trt-profile", "jetson-nope"]) == 2
    assert "unknown build profile 'jetson-nope'" in capsys.readouterr().err


@pytest.mark.parametrize("key", ["block_kernel", "input_kernel"])
def test_train_refuses_a_config_export_would_refuse_before_training(workdir, capsys, key):
    """`--set block_kernel=1` used to train, then crash in export; now it is refused when it is made."""
    out = workdir / f"never-{key}"
    assert main(["train", "--data", str(workdir / "tiny.npz"), "--set", f"{key}=1", "-o", str(out),
                 "--epochs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{key}=1 must be an odd number of at least 3" in err and "Traceback" not in err
    assert not out.exists()
