"""ONNX Runtime's CUDA execution provider against the CPU one (runs where a CUDA device exists)."""
import numpy as np
import pytest

from pixelrt.export.validator import BPD_BUDGET, LOGP_BUDGET
from pixelrt.runtime.backends import open_backend
from pixelrt.runtime.evaluate import evaluate
from pixelrt.runtime.sampler import make_noise, step_loop

pytestmark = pytest.mark.gpu


def test_ort_cuda_matches_cpu_bits_per_dim_and_samples(grey_bundle):
    _, bundle = grey_bundle
    x = bundle.reference()["x"]
    noise = make_noise(4, bundle.image, 0)
    results = {}
    for runtime in ("ort", "ort-cuda"):
        with open_backend(runtime, bundle.graph_path("full")) as full, \
                open_backend(runtime, bundle.graph_path("step")) as step:
            results[runtime] = (evaluate(full, bundle, x), step_loop(step, bundle.image, bundle.state, noise))
    (cpu_eval, cpu_s), (gpu_eval, gpu_s) = results["ort"], results["ort-cuda"]
    assert np.abs(cpu_eval.bits_per_dim - gpu_eval.bits_per_dim).max() <= BPD_BUDGET
    assert np.abs(cpu_eval.logp - gpu_eval.logp).max() <= LOGP_BUDGET
    assert (cpu_s.images == gpu_s.images).mean() >= 0.9
