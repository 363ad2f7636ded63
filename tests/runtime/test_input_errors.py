"""Bad inputs to evaluation, the step loop, backends and the CLI: one clear error each, nothing written."""
from __future__ import annotations

import re

import numpy as np
import pytest

from pixelrt.cli import main
from pixelrt.errors import DataError, PixelrtError
from pixelrt.bundle import MANIFEST, ImageSpec
from pixelrt.runtime.evaluate import evaluate
from pixelrt.runtime.ort_backend import OrtBackend
from pixelrt.runtime.sampler import check_noise, make_noise, step_loop

REEXPORT = re.escape("re-run `pixelrt export")
from tests.runtime.bundle_edits import MustNotRun, copy_bundle, flip_byte, read_manifest, rehash, write_manifest_json

# ---------------------------------------------------------------- evaluate()

@pytest.fixture(scope="module")
def grey_full(grey_bundle):
    with OrtBackend(grey_bundle[1].graph_path("full")) as full:
        yield full


def test_evaluate_accepts_the_reference_batch(grey_bundle, grey_full):
    b = grey_bundle[1]
    ref = b.reference()
    res = evaluate(grey_full, b, ref["x"])
    np.testing.assert_allclose(res.loglik, ref["loglik"], atol=1e-4)


@pytest.mark.parametrize("shape", [(3, 1, 8, 8), (3, 1, 6, 5), (3, 3, 5, 6)])
def test_evaluate_wrong_image_shape(grey_bundle, grey_full, shape):
    b = grey_bundle[1]
    x = np.zeros(shape, dtype=np.uint8)
    got = "x".join(map(str, shape[1:]))
    with pytest.raises(DataError, match=rf"images are {got} \(C x H x W\) but the bundle .* was exported for 1x5x6"):
        evaluate(grey_full, b, x)


@pytest.mark.parametrize("shape", [(1, 5, 6), (5, 6), (2, 1, 1, 5, 6)])
def test_evaluate_wrong_rank(grey_bundle, grey_full, shape):
    with pytest.raises(DataError, match=rf"expected images shaped \(N, C, H, W\), got shape {re.escape(str(shape))}"):
        evaluate(grey_full, grey_bundle[1], np.zeros(shape, dtype=np.uint8))


def test_evaluate_values_out_of_range(grey_bundle, grey_full):
    b = grey_bundle[1]  # 7 levels: 0..6
    x = b.reference()["x"].copy()
    x[0, 0, 2, 3] = 7
    with pytest.raises(DataError, match=r"has values up to 7 but levels=7 allows at most 6"):
        evaluate(grey_full, b, x)
    neg = np.zeros((1, 1, 5, 6), np.int16)
    neg[0, 0, 4, 4] = -1
    with pytest.raises(DataError, match=r"negative values \(down to -1\); grey levels must be in 0\.\.6"):
        evaluate(grey_full, b, neg)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_evaluate_non_finite(grey_bundle, grey_full, bad):
    b = grey_bundle[1]
    x = b.reference()["x"].astype(np.float32)
    x[1, 0, 0, 0] = bad
    with pytest.raises(DataError, match=r"images contain NaN or infinite values"):
        evaluate(grey_full, b, x)


def test_evaluate_fractional_and_empty(grey_bundle, grey_full):
    b = grey_bundle[1]
    x = b.reference()["x"].astype(np.float32) / 6.0
    x[0, 0, 0, 0] = 0.5
    with pytest.raises(DataError, match=r"fractional values"):
        evaluate(grey_full, b, x)
    with pytest.raises(DataError, match=r"the image set is empty"):
        evaluate(grey_full, b, np.zeros((0, 1, 5, 6), dtype=np.uint8))


def test_evaluate_error_names_the_source(grey_bundle, grey_full):
    with pytest.raises(DataError, match=r"^my\.npz: "):
        evaluate(grey_full, grey_bundle[1], np.full((1, 1, 5, 6), 99, np.uint8), source="my.npz")


# ---------------------------------------------------------------- step_loop()

def test_step_loop_nan_noise(grey_bundle):
    b = grey_bundle[1]
    noise = make_noise(2, b.image, 0)
    noise[1, 0, 4, 5] = np.nan
    with pytest.raises(PixelrtError, match=r"noise contains NaN or infinity; draw it with make_noise"):
        step_loop(MustNotRun(), b.image, b.state, noise)


@pytest.mark.parametrize("bad", [1.0, -0.25, 3.0])
def test_step_loop_noise_out_of_range(grey_bundle, bad):
    b = grey_bundle[1]
    noise = make_noise(2, b.image, 0)
    noise[0, 0, 1, 1] = bad
    with pytest.raises(PixelrtError, match=r"noise must lie in \[0, 1\), got .*draw it with make_noise"):
        step_loop(MustNotRun(), b.image, b.state, noise)


@pytest.mark.parametrize("shape", [(2, 1, 6, 5), (2, 3, 5, 6), (2, 5, 6), (2, 1, 5, 6, 1)])
def test_step_loop_wrong_noise_shape(grey_bundle, shape):
    b = grey_bundle[1]
    noise = np.full(shape, 0.5, np.float32)
    with pytest.raises(PixelrtError, match=rf"noise has shape {re.escape(str(shape))}, expected \(2, 1, 5, 6\)"):
        step_loop(MustNotRun(), b.image, b.state, noise)


def test_check_noise_accepts_make_noise():
    image = ImageSpec(3, 4, 5, 5)
    noise = make_noise(3, image, 7)
    assert noise.dtype == np.float32 and noise.shape == (3, 3, 4, 5)
    assert check_noise(noise, 3, image) is noise
    np.testing.assert_array_equal(noise, make_noise(3, image, 7))  # one seed, one noise


@pytest.mark.parametrize("shape", [(2, 1, 5, 5), (3, 1, 5, 6), (2, 5, 6)])
def test_step_loop_forced_wrong_shape(grey_bundle, shape):
    b = grey_bundle[1]
    with pytest.raises(PixelrtError,
                       match=rf"forced images have shape {re.escape(str(shape))}, expected \(2, 1, 5, 6\)"):
        step_loop(MustNotRun(), b.image, b.state, make_noise(2, b.image, 0), force=np.zeros(shape, np.uint8))


@pytest.fixture(scope="module")
def grey_step(grey_bundle):
    with OrtBackend(grey_bundle[1].graph_path("step")) as step:
        yield step


def test_step_loop_forced_values_too_large(grey_bundle, grey_step):
    b = grey_bundle[1]
    force = np.full((2, 1, 5, 6), 50, np.int64)
    with pytest.raises(DataError, match=r"forced images.*levels"):
        step_loop(grey_step, b.image, b.state, make_noise(2, b.image, 0), force=force)


def test_step_loop_forced_values_negative(grey_bundle, grey_step):
    b = grey_bundle[1]
    force = b.reference()["x"][:2].astype(np.int64)
    force[0, 0, 0, 0] = -3
    with pytest.raises(DataError, match=r"forced images.*negative"):
        step_loop(grey_step, b.image, b.state, make_noise(2, b.image, 0), force=force)


# ---------------------------------------------------------------- Backend.check()

def _step_feeds(bundle, batch: int = 2) -> dict[str, np.ndarray]:
    C = bundle.image.channels
    feeds = {s.name: s.allocate(batch) for s in bundle.state}
    feeds.update(pixel=np.zeros((batch, C), np.int64), row=np.array(0, np.int64), col=np.array(0, np.int64),
                 channel=np.array(0, np.int64), force=np.full(batch, -1, np.int64),
                 noise=np.full(batch, 0.5, np.float32))
    return feeds


def test_check_accepts_valid_feeds(grey_bundle, grey_step):
    feeds = _step_feeds(grey_bundle[1])
    grey_step.check(feeds)  # must not raise
    out = grey_step.infer(feeds)
    assert out["value"].shape == (2,) and 0 <= out["value"].min() and out["value"].max() < 7


def test_check_missing_input(grey_bundle, grey_step):
    feeds = _step_feeds(grey_bundle[1])
    del feeds["noise"]
    with pytest.raises(PixelrtError, match=r"step\.onnx: inputs do not match the graph \(missing: \['noise'\], "
                                           r"unexpected: none\).*re-run `pixelrt export`"):
        grey_step.infer(feeds)


def test_check_unknown_input(grey_bundle, grey_step):
    feeds = _step_feeds(grey_bundle[1])
    feeds["temperature"] = np.array(1.0, np.float32)
    with pytest.raises(PixelrtError, match=r"missing: none, unexpected: \['temperature'\]"):
        grey_step.check(feeds)


def test_check_wrong_dtype(grey_bundle, grey_step):
    feeds = _step_feeds(grey_bundle[1])
    feeds["noise"] = feeds["noise"].astype(np.float64)
    with pytest.raises(PixelrtError, match=r"step\.onnx: input 'noise' must be float32, got float64"):
        grey_step.check(feeds)
    feeds = _step_feeds(grey_bundle[1])
    feeds["row"] = 0  # a Python int, not an array
    with pytest.raises(PixelrtError, match=r"input 'row' must be int64, got int"):
        grey_step.check(feeds)


def test_check_wrong_fixed_dim(grey_bundle, grey_step):
    feeds = _step_feeds(grey_bundle[1])
    name = grey_bundle[1].state[0].name
    shape = list(feeds[name].shape)
    shape[3] -= 1
    feeds[name] = np.zeros(shape, np.float32)
    with pytest.raises(PixelrtError, match=rf"input '{name}' has shape {re.escape(str(tuple(shape)))}, "
                                           r"the graph expects \(None, "):
        grey_step.check(feeds)


def test_check_wrong_rank(grey_bundle, grey_step, grey_full):
    feeds = _step_feeds(grey_bundle[1])
    feeds["row"] = np.array([0], np.int64)
    with pytest.raises(PixelrtError, match=r"input 'row' has shape \(1,\), the graph expects \(\)"):
        grey_step.check(feeds)
    with pytest.raises(PixelrtError, match=r"full\.onnx: input 'x' has shape \(2, 5, 6\)"):
        grey_full.check({"x": np.zeros((2, 5, 6), np.uint8)})


# ---------------------------------------------------------------- CLI: one line, exit 2, no traceback

def _cli(capsys, argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str, command: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"pixelrt {command}: error: "), lines[0]
    return lines[0]


def test_cli_sample_missing_bundle(capsys, tmp_path):
    code, out, err = _cli(capsys, ["sample", tmp_path / "nope", "-n", 2, "-o", tmp_path / "s.png", "--no-progress"])
    assert code == 2
    assert "does not exist; create it with `pixelrt export" in _one_error_line(err, "sample")
    assert out == ""
    assert not (tmp_path / "s.png").exists()


def test_cli_eval_corrupt_bundle(capsys, grey_bundle, tmp_path):
    root = copy_bundle(grey_bundle[1], tmp_path)
    flip_byte(root / "full.onnx")
    code, out, err = _cli(capsys, ["eval", root])
    assert code == 2
    line = _one_error_line(err, "eval")
    assert "full.onnx: sha256 mismatch" in line and "re-run `pixelrt export" in line


def test_cli_sample_unloadable_graph(capsys, grey_bundle, tmp_path):
    root = copy_bundle(grey_bundle[1], tmp_path)
    (root / "step.onnx").write_bytes(b"\x08\x07garbage")
    rehash(root, "step.onnx")
    code, out, err = _cli(capsys, ["sample", root, "-n", 2, "-o", tmp_path / "s.png", "--no-progress"])
    assert code == 2
    assert "ONNX Runtime cannot load this graph" in _one_error_line(err, "sample")
    assert not (tmp_path / "s.png").exists()


@pytest.mark.parametrize("n", [0, -3])
def test_cli_sample_n_zero(capsys, grey_bundle, tmp_path, n):
    code, out, err = _cli(capsys, ["sample", grey_bundle[1].root, "-n", n, "-o", tmp_path / "s.png"])
    assert code == 2
    assert f"argument -n/--num: {n} is out of range: use 1..1000000" in _one_error_line(err, "sample")
    assert not (tmp_path / "s.png").exists()


def test_cli_info_corrupt_manifest(capsys, grey_bundle, tmp_path):
    root = copy_bundle(grey_bundle[1], tmp_path)
    (root / MANIFEST).write_text("{\"format\": ")
    code, out, err = _cli(capsys, ["info", root])
    assert code == 2
    assert "manifest.json is corrupt (not valid JSON" in _one_error_line(err, "info")


def test_cli_info_manifest_without_reference(capsys, grey_bundle, tmp_path):
    root = copy_bundle(grey_bundle[1], tmp_path)
    m = read_manifest(root)
    del m["reference"]
    write_manifest_json(root, m)
    code, out, err = _cli(capsys, ["info", root])
    assert code == 2
    assert "reference" in _one_error_line(err, "info")


def test_cli_info_good_bundle(capsys, grey_bundle):
    code, out, err = _cli(capsys, ["info", grey_bundle[1].root])
    assert code == 0 and err == ""
    assert "image 1x5x6, 7 levels" in out and "checksums verified" in out


def test_zero_batch_size_and_zero_images_are_refused(grey_bundle):
    _, bundle = grey_bundle
    with pytest.raises(PixelrtError, match="batch size must be at least 1"):
        step_loop(MustNotRun(), bundle.image, bundle.state, make_noise(2, bundle.image, 0), batch_size=0)
    with pytest.raises(PixelrtError, match="at least one"):
        step_loop(MustNotRun(), bundle.image, bundle.state, make_noise(0, bundle.image, 0))
    with pytest.raises(PixelrtError, match="batch size must be at least 1"):
        evaluate(MustNotRun(), bundle, bundle.reference()["x"], batch_size=0)
