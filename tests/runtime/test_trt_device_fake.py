"""CudaDevice itself on a CPU: the real kernel source compiled for the host, ORT sessions as engines,
stream capture recorded and replayed with capture-time bindings (tests/runtime/fake_cuda.py).

What this proves beyond HostDevice: CudaDevice's buffer allocation and uploads, every kernel's argument
list against the CUDA C signatures, the capture-once-per-parity / replay design (no host work per step),
the row engine's binding and the device-to-device copies. What it cannot prove: TensorRT and CUDA
themselves (tests/runtime/test_trt_gpu.py, scripts/gpu_check.sh)."""
from __future__ import annotations

import numpy as np
import pytest

from pixelrt.runtime.ort_backend import OrtBackend
from pixelrt.runtime.sampler import make_noise, step_loop
from pixelrt.runtime.trt_loop import device_loop
from tests.runtime.fake_cuda import compiler, cuda_device

pytestmark = pytest.mark.skipif(compiler() is None, reason="needs a C++ compiler (c++/g++/clang++) to build the "
                                                           "loop kernels for the host; none on PATH")


@pytest.mark.parametrize("cuda_graph", [True, False])
@pytest.mark.parametrize("which", ["grey_bundle", "rgb_bundle"])
def test_cuda_device_on_fake_cuda_equals_step_loop(which, cuda_graph, request, monkeypatch, tmp_path):
    _, bundle = request.getfixturevalue(which)
    img = bundle.image
    noise = make_noise(5, img, 3)
    x = bundle.reference()["x"]
    with OrtBackend(bundle.graph_path("step")) as step:
        device, rt = cuda_device(monkeypatch, tmp_path, step, cuda_graph=cuda_graph)
        for force, nz in ((None, noise), (x, make_noise(len(x), img, 0))):
            want = step_loop(step, img, bundle.state, nz, force=force, batch_size=3)
            got = device_loop(device, img, bundle.state, nz, force=force, batch_size=3)
            np.testing.assert_array_equal(got.images, want.images)
            np.testing.assert_array_equal(got.logp, want.logp)
        device.close()
    steps = img.height * img.width * img.channels
    batches = 2 + 2  # 5 = 3 + 2 sampled, 5 = 3 + 2 forced
    if cuda_graph:  # one capture per batch (ring-row only: one parity); every step is one replay
        assert rt.counts["captured"] == batches and rt.counts["replay"] == batches * steps
        assert rt.counts["launch"] == 0  # no kernel launched outside a graph
    else:
        assert rt.counts["replay"] == 0 and rt.counts["launch"] == batches * steps * (3 + len(bundle.state))
