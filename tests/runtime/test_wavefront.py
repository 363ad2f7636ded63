"""The wavefront loop (runtime/wavefront.py): several pixels of each image per call, on the step graph's own
states. It samples the raster loop's images seed for seed, its teacher-forced log-probs equal the full graph's,
it takes W + lag * (H - 1) calls per sub-step, and a manifest whose wavefront could read a column not yet
written is refused. Speed is measured in `pixelrt bench`, never timed here."""
import numpy as np
import pytest

from pixelrt.bundle import load_bundle
from pixelrt.errors import BundleError, PixelrtError
from pixelrt.runtime.backends import open_backend, step_backends
from pixelrt.runtime.bundle_checks import LOGP_BUDGET
from pixelrt.runtime.sampler import bundle_loop, make_noise
from pixelrt.runtime.wavefront import WavefrontRunner, wave_loop
from tests.runtime.bundle_edits import copy_bundle, read_manifest, write_manifest_json


class Counting:
    """A runner that counts its calls and the pixels in flight of each."""

    def __init__(self, runner):
        self.runner, self.calls, self.pixels = runner, 0, []

    def infer(self, feeds, check=True):
        self.calls += 1
        self.pixels.append(len(feeds["rows"]))
        return self.runner.infer(feeds, check=check)


@pytest.mark.parametrize("fixture", ["grey_bundle", "rgb_bundle"])
def test_wavefront_samples_the_raster_loops_images_in_fewer_calls(fixture, request):
    model, bundle = request.getfixturevalue(fixture)
    C, H, W = bundle.image.shape
    front = bundle.step_schedule.wavefront
    assert front.lag == model.config.input_kernel // 2 + 1 < W  # the input conv reaches furthest right
    with step_backends("ort", bundle, "raster") as (raster, _), step_backends("ort", bundle) as (wave, _):
        assert isinstance(wave, WavefrontRunner) and not isinstance(raster, WavefrontRunner)
        for seed, n, batch in ((0, 1, 1), (1, 3, 2), (2, 4, 4)):
            noise = make_noise(n, bundle.image, seed, bundle.step_schedule)
            a = bundle_loop(raster, None, bundle, noise, batch_size=batch)
            b = bundle_loop(wave, None, bundle, noise, batch_size=batch)
            assert np.array_equal(a.images, b.images), seed
            assert np.abs(a.logp - b.logp).max() < LOGP_BUDGET
        counting = Counting(wave.wave)
        wave_loop(counting, bundle.image, bundle.state, bundle.step_schedule, make_noise(2, bundle.image, 5))
    assert counting.calls == (W + front.lag * (H - 1)) * C < H * W * C
    assert max(counting.pixels) == min(H, -(-W // front.lag)) and min(counting.pixels) == 1


def test_teacher_forced_wavefront_equals_the_full_graph(rgb_bundle):
    _, bundle = rgb_bundle
    x = bundle.reference()["x"]
    with open_backend("ort", bundle.graph_path("wave")) as wave, open_backend("ort", bundle.graph_path("full")) as full:
        forced = wave_loop(wave, bundle.image, bundle.state, bundle.step_schedule,
                           make_noise(len(x), bundle.image, 0), force=x)
        want = full.infer({"x": x})["logp"]
    assert np.array_equal(forced.images, x)
    assert np.abs(forced.logp - want).max() < LOGP_BUDGET


def test_loop_choice_is_checked(grey_bundle, multiscale_bundle):
    _, bundle = grey_bundle
    with pytest.raises(PixelrtError, match="unknown loop 'diagonal'"):
        with step_backends("ort", bundle, "diagonal"):
            pass
    with pytest.raises(PixelrtError, match="runs on ort, ort-cuda, not trt"):
        with step_backends("trt", bundle, "wave"):
            pass
    stage = load_bundle(multiscale_bundle[1].root / "stage1")  # Row LSTM: a row recurrence, no wavefront
    with pytest.raises(PixelrtError, match="has no wavefront graph"):
        with step_backends("ort", stage, "wave"):
            pass


def _edited(bundle, tmp_path, edit):
    root = copy_bundle(bundle, tmp_path)
    m = read_manifest(root)
    edit(m)
    write_manifest_json(root, m)
    return root


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["schedule"]["wavefront"].update(lag=3), r"schedule\.wavefront\.lag.*must exceed state 'cache_0'"),
    (lambda m: m["schedule"]["wavefront"].update(lag=7), r"schedule\.wavefront\.lag.*wider than the image"),
    (lambda m: m["schedule"]["wavefront"].update(lag=0), r"schedule\.wavefront\.lag"),
    (lambda m: m["schedule"]["wavefront"].update(graph="step"), r"schedule\.wavefront\.graph.*not a graph of its own"),
    (lambda m: m["schedule"]["wavefront"].update(graph="nope"), r"schedule\.wavefront\.graph.*not a graph of its own"),
    (lambda m: m["schedule"]["wavefront"].update(extra=1), r"schedule\.wavefront"),
    (lambda m: m["graphs"]["wave"]["inputs"][1].update(shape=["batch"]), r"must have input 'rows' as int64 \['pixels'\]"),
    (lambda m: m["graphs"]["wave"]["outputs"][3].update(shape=["batch", "pixels", 2, 9]), r"must give 'new_1'"),
    (lambda m: m["graphs"]["wave"]["inputs"].append({"name": "secret", "dtype": "int64", "shape": []}),
     r"lists 'secret', which is neither a wavefront input"),
    (lambda m: m["schedule"]["wavefront"].update(layout="batch-middle"), r"schedule\.wavefront\.layout.*must be one of"),
    # the layout says batch-first, the graph's records are batch-last: refused before any graph is opened
    (lambda m: m["schedule"]["wavefront"].update(layout="batch-first"),
     r"must take state 'cache_0' as float32 \['batch', 1, 4, 12, 1\] \(layout batch-first\)"),
    (lambda m: m["graphs"]["wave"]["outputs"][0].update(shape=["batch", "pixels"]),
     r"must have output 'value' as int64 \['pixels', 'batch'\]"),
])
def test_a_wavefront_that_could_read_unwritten_columns_is_refused(grey_bundle, tmp_path, edit, message):
    root = _edited(grey_bundle[1], tmp_path, edit)
    with pytest.raises(BundleError, match=message):
        load_bundle(root)


def test_a_bundle_without_its_wavefront_record_samples_in_raster_order(grey_bundle, tmp_path):
    _, bundle = grey_bundle
    root = _edited(bundle, tmp_path, lambda m: m["schedule"].pop("wavefront"))
    plain = load_bundle(root)
    assert plain.step_schedule.wavefront is None
    noise = make_noise(2, plain.image, 0)
    with step_backends("ort", plain) as (step, _):
        assert not isinstance(step, WavefrontRunner)
        got = bundle_loop(step, None, plain, noise)
    with step_backends("ort", bundle) as (step, _):
        assert np.array_equal(bundle_loop(step, None, bundle, noise).images, got.images)


def test_a_batch_first_wavefront_samples_the_same_images(grey_bundle, tmp_path):
    """The other layout of the contract (``bundle.state.WAVE_LAYOUTS``): the step graph's own states, batch
    first. PixelCNN exports batch-last; a model may declare either, and the host drives both."""
    from pixelrt.export import export_bundle
    from pixelrt.models.pixelcnn_wave import PixelCNNWave

    model, bundle = grey_bundle

    class BatchFirst(type(model)):
        def wave_module(self, image):
            return PixelCNNWave(self.step_module(image), "batch-first")

    other = BatchFirst(model.config).eval()
    other.load_state_dict(model.state_dict())
    first = export_bundle(other, bundle.image, bundle.reference()["x"], tmp_path / "first", log=lambda s: None).bundle
    front = first.step_schedule.wavefront
    assert (front.layout, bundle.step_schedule.wavefront.layout) == ("batch-first", "batch-last")
    wave = first.manifest.graphs["wave"]
    assert wave.input("cache_1").shape == first.state[1].shape and wave.output("value").shape == ("batch", "pixels")
    noise = make_noise(4, bundle.image, 3, bundle.step_schedule)
    with step_backends("ort", first) as (a, _), step_backends("ort", bundle) as (b, _):
        got, want = bundle_loop(a, None, first, noise, batch_size=3), bundle_loop(b, None, bundle, noise, batch_size=3)
    assert np.array_equal(got.images, want.images)
    assert np.abs(got.logp - want.logp).max() < LOGP_BUDGET
