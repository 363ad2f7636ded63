"""Native TensorRT and the ORT GPU providers against the budgets (run where a CUDA device exists).

Skipped on machines without CUDA (tests/conftest.py) and without TensorRT / cuda-python (below).
scripts/gpu_check.sh runs these plus the bench table in one go.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from pixelrt.export.validator import BPD_BUDGET, LOGP_BUDGET
from pixelrt.runtime.evaluate import evaluate
from pixelrt.runtime.ort_backend import OrtBackend
from pixelrt.runtime.sampler import bundle_loop, make_noise, step_loop

pytestmark = pytest.mark.gpu
needs_trt = pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("cuda") is None,
    reason="needs TensorRT and cuda-python (pip install pixelrt[gpu]); not installed here")

TRT_BPD_BUDGET = 1e-4  # the budget for TensorRT FP32 (TF32 off) vs PyTorch


@pytest.fixture
def trt_backends(tmp_path):
    from pixelrt.runtime.engine_cache import EngineCache
    from pixelrt.runtime.trt_backend import TrtBackend, TrtStepBackend, current_device
    from pixelrt.runtime.trt_profiles import get_profile

    profile = get_profile("server").with_options(tf32=False, batch_max=16)
    cache = EngineCache(current_device(), tmp_path / "engines", log=lambda s: None)

    def make(bundle, graph, **kw):
        cls = TrtStepBackend if graph == "step" else TrtBackend
        return cls(bundle.graph_path(graph), profile, cache=cache, **({"graph": graph} if graph != "step" else {}), **kw)

    return make


@needs_trt
@pytest.mark.parametrize("which", ["grey_bundle", "rgb_bundle"])
def test_trt_full_graph_matches_pytorch_reference(which, request, trt_backends):
    _, bundle = request.getfixturevalue(which)
    ref = bundle.reference()
    with trt_backends(bundle, "full") as full:
        res = evaluate(full, bundle, ref["x"])
    assert np.abs(res.bits_per_dim - bundle.image.bits_per_dim(ref["loglik"])).max() <= TRT_BPD_BUDGET


@needs_trt
@pytest.mark.parametrize("which", ["grey_bundle", "rgb_bundle"])
def test_trt_device_loop_samples_and_likelihoods(which, request, trt_backends):
    _, bundle = request.getfixturevalue(which)
    noise = make_noise(6, bundle.image, 0)
    with OrtBackend(bundle.graph_path("step")) as cpu_step, OrtBackend(bundle.graph_path("full")) as cpu_full:
        cpu = step_loop(cpu_step, bundle.image, bundle.state, noise, batch_size=4)
        with trt_backends(bundle, "step") as step:
            _check_device_loop(bundle, step, noise, cpu, cpu_full)


@pytest.mark.parametrize("runtime", ["ort-cuda", "ort-cuda-graph", "ort-trt"])
def test_ort_gpu_providers_match_cpu(runtime, grey_bundle):
    import onnxruntime as ort

    from pixelrt.runtime.backends import open_backend

    if runtime == "ort-trt" and "TensorrtExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu here has no TensorRT execution provider")
    _, bundle = grey_bundle
    x = bundle.reference()["x"]
    noise = make_noise(4, bundle.image, 0)
    with OrtBackend(bundle.graph_path("full")) as cpu_full, OrtBackend(bundle.graph_path("step")) as cpu_step:
        want, want_s = evaluate(cpu_full, bundle, x), step_loop(cpu_step, bundle.image, bundle.state, noise, batch_size=4)
    with open_backend(runtime, bundle.graph_path("full")) as full, open_backend(runtime, bundle.graph_path("step")) as step:
        got, got_s = evaluate(full, bundle, x), step_loop(step, bundle.image, bundle.state, noise, batch_size=4)
    assert np.abs(got.bits_per_dim - want.bits_per_dim).max() <= BPD_BUDGET
    assert (got_s.images == want_s.images).mean() >= 0.9


def _pixelcnnpp_bundle(tmp_path):
    """PixelCNN++ 3x4x4, two resolutions: ring-row, strided-ring-row and row states."""
    import torch

    from pixelrt.export import export_bundle
    from pixelrt.models import PixelCNNPP, PixelCNNPPConfig
    from pixelrt.bundle import ImageSpec

    torch.manual_seed(0)
    model = PixelCNNPP(PixelCNNPPConfig(channels=3, levels=16, filters=8, resnets=1, resolutions=2, mixtures=3,
                                        dropout=0.0)).eval()
    image = ImageSpec(3, 4, 4, 16)
    x = np.random.default_rng(0).integers(0, 16, (3, *image.shape)).astype(np.uint8)
    return export_bundle(model, image, x, tmp_path / "pp", log=lambda s: None).bundle


@needs_trt
def test_trt_device_loop_with_row_graph_and_strided_states(tmp_path, trt_backends):
    """The per-row graph and the strided caches on the device: CUDA graphs on == off, samples vs ORT CPU,
    teacher-forced log p within budget, summed sample log p == full log-likelihood."""
    from pixelrt.runtime.backends import step_backends

    bundle = _pixelcnnpp_bundle(tmp_path)
    sched = bundle.step_schedule
    noise = make_noise(6, bundle.image, 0, sched)
    with step_backends("ort", bundle) as (cpu_step, cpu_row), OrtBackend(bundle.graph_path("full")) as cpu_full:
        cpu = bundle_loop(cpu_step, cpu_row, bundle, noise, batch_size=4)
        with trt_backends(bundle, "step") as step, trt_backends(bundle, "row") as row:
            step.row_backend = row
            _check_device_loop(bundle, step, noise, cpu, cpu_full)


def _check_device_loop(bundle, step, noise, cpu, cpu_full) -> None:
    """The device-resident loop (CUDA graphs, then plain launches, then teacher-forced) against the CPU loop
    ``cpu`` on the same noise, and its summed log-probs against the CPU full graph."""
    dev = bundle_loop(step, None, bundle, noise, batch_size=4)  # device-resident, CUDA graphs
    step.cuda_graph = False
    plain = bundle_loop(step, None, bundle, noise, batch_size=4)
    forced = bundle_loop(step, None, bundle, noise, force=cpu.images, batch_size=4)
    full = evaluate(cpu_full, bundle, dev.images)
    np.testing.assert_array_equal(dev.images, plain.images)
    assert (dev.images == cpu.images).mean() >= 0.9
    assert np.abs(bundle.image.bits_per_dim(dev.loglik) - full.bits_per_dim).max() <= TRT_BPD_BUDGET
    assert np.abs(forced.logp - cpu.logp).max() <= LOGP_BUDGET
