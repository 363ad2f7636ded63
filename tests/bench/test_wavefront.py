"""The wavefront prototype (bench/wavefront.py) samples the same image, seed for seed, as the bundle's
step loop, in W + lag * (H - 1) calls instead of H * W. Measured in `pixelrt bench`, never timed here."""
import numpy as np
import onnxruntime as ort

from pixelrt.bench.wavefront import export_wavefront, lag_of, wavefront_sample
from pixelrt.runtime.ort_backend import OrtBackend
from pixelrt.runtime.sampler import make_noise, step_loop


def test_wavefront_samples_the_step_loops_image(grey_bundle, tmp_path):
    model, bundle = grey_bundle
    C, H, W = bundle.image.shape
    wave, lag = export_wavefront(model, W, H, tmp_path / "wave.onnx")
    assert lag == lag_of(model.config) == model.config.input_kernel // 2 + 1
    session = ort.InferenceSession(str(tmp_path / "wave.onnx"), providers=["CPUExecutionProvider"])
    with OrtBackend(bundle.graph_path("step")) as step:
        for seed in (0, 1, 2):
            noise = make_noise(1, bundle.image, seed)
            images, logp, calls = wavefront_sample(session, wave, lag, noise)
            ref = step_loop(step, bundle.image, bundle.state, noise, batch_size=1)
            assert np.array_equal(images, ref.images)
            assert np.abs(logp - ref.logp).max() < 1e-4
    assert calls == W + lag * (H - 1) < H * W
