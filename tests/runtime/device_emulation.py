"""One check for every exported family: the device loop's plan, emulated on CPU, equals bundle_loop.

``HostDevice`` (runtime/trt_host.py) runs the plan with the CUDA kernels' index arithmetic in numpy,
ORT CPU sessions standing in for the TensorRT engines; where a C++ compiler exists, the real
``CudaDevice`` runs too, on tests/runtime/fake_cuda.py (the CUDA C kernels compiled for the host). Called from each family's export tests with
the bundle they already exported (no extra export), so every state kind a family uses (ring-row,
strided-ring-row, row with its per-row graph, context inputs) is proven bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest

from pixelrt.errors import PixelrtError
from pixelrt.runtime.backends import step_backends
from pixelrt.runtime.conditioning import check_conditioning
from pixelrt.runtime.sampler import bundle_loop, make_noise
from pixelrt.runtime.trt_host import HostDevice
from pixelrt.runtime.trt_loop import device_loop


def assert_device_plan_matches_bundle_loop(bundle, context: dict | None = None, n: int = 5, seed: int = 7) -> None:
    """Sampling and teacher forcing, in batches of 3 then 2 (a fresh plan per batch): identical images
    and identical float32 log-probs to ``bundle_loop`` with ORT CPU. A device without the bundle's
    row graph is refused with a clear error."""
    img, sched = bundle.image, bundle.step_schedule
    noise = make_noise(n, img, seed, sched)
    context = check_conditioning(bundle, context, n) if (context or bundle.context) else None
    force = np.random.default_rng(seed).integers(0, img.levels, (n, *img.shape)).astype(np.uint8)
    with step_backends("ort", bundle) as (step, row):
        for f in (None, force):
            want = bundle_loop(step, row, bundle, noise, force=f, batch_size=3, context=context)
            got = device_loop(HostDevice(step, row), img, bundle.state, noise, force=f, batch_size=3,
                              schedule=sched, context=context)
            np.testing.assert_array_equal(got.images, want.images)
            np.testing.assert_array_equal(got.logp, want.logp)
            _assert_cuda_device_on_fake_cuda(bundle, step, row, noise, f, context, want)
        if row is not None:
            with pytest.raises(PixelrtError, match="per-row graph"):
                device_loop(HostDevice(step), img, bundle.state, noise, schedule=sched, context=context)
        assert_memory_estimate_covers_the_plan(bundle, HostDevice(step, row))
    assert len(np.unique(want.logp)) > n  # real, varied conditionals


def _assert_cuda_device_on_fake_cuda(bundle, step, row, noise, force, context, want) -> None:
    """The real CudaDevice (kernels compiled for the host, ORT as engines, CUDA graphs recorded and
    replayed): the same images and log-probs as well (tests/runtime/fake_cuda.py; needs a C++ compiler)."""
    from tests.runtime.fake_cuda import compiler, cuda_device, tmpdir

    if compiler() is None:
        return
    with pytest.MonkeyPatch.context() as mp:
        device, rt = cuda_device(mp, tmpdir(), step, row)
        got = device_loop(device, bundle.image, bundle.state, noise, force=force, batch_size=3,
                          schedule=bundle.step_schedule, context=context)
        device.close()
    np.testing.assert_array_equal(got.images, want.images)
    np.testing.assert_array_equal(got.logp, want.logp)
    assert rt.counts["launch"] == 0 and rt.counts["replay"] > 0  # everything ran inside captured graphs
    if row is not None:
        assert len(device.row_graphs) == 0  # released by close(); captured per batch above
        assert rt.counts["captured"] == 2 * 2  # per batch (3 + 2 images): the step graph and the row graph


def assert_memory_estimate_covers_the_plan(bundle, device) -> None:
    """`pixelrt doctor`/`build-engine`'s estimate (state; noise + per-step results) equals the bytes of
    the device plan's batch-proportional buffers at the profile's max batch, row-graph buffers included."""
    from pixelrt.runtime.trt_loop import plan_buffers
    from pixelrt.runtime.trt_profiles import estimate_memory, get_profile

    profile = get_profile("jetson-orin-nano")
    est = estimate_memory(bundle, profile)
    plan = plan_buffers(device.step_inputs, device.step_outputs, bundle.state, profile.batch[2], bundle.step_schedule,
                        bundle.image, getattr(device, "row_inputs", None), getattr(device, "row_outputs", None))
    nbytes = {k: int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize for k, (shape, dt) in plan.buffers.items()}
    assert est.state == sum(b for k, b in nbytes.items() if k.startswith(("state:", "rowout:"))), (est.state, nbytes)
    loop = ("tab:noise", "tab:force", "tab:value", "tab:logp", "in:pixel", "rowin:row_pixels")
    assert est.loop_io == sum(b for k, b in nbytes.items() if k in loop), (est.loop_io, nbytes)
    from pixelrt.runtime.trt_support import trt_graphs

    trt = set(trt_graphs(bundle))  # every graph but a wavefront graph (ORT only)
    assert set(est.weights) == trt and all(est.weights[g] > 0 for g in trt)


def assert_tensorrt_parser_check_passes(bundle, known: tuple = ()) -> None:
    """`pixelrt doctor --target tensorrt` finds nothing in any of the bundle's graphs (row graph included),
    apart from exactly the ``known`` findings, (graph, severity, kind, op) each."""
    from pixelrt.runtime.trt_support import check_bundle

    from pixelrt.runtime.trt_support import trt_graphs

    checks = check_bundle(bundle)
    assert {c.graph for c in checks} == set(trt_graphs(bundle))
    found = [(c.graph, f.severity, f.kind, f.op) for c in checks for f in c.findings]
    detail = [(c.graph, f.node, f.message) for c in checks for f in c.findings]
    assert sorted(found) == sorted(known), detail
