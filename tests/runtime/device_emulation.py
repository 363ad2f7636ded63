"""One check for every exported family: the device loop's plan, emulated on CPU, equals bundle_loop.

``HostDevice`` (runtime/trt_host.py) runs the plan with the CUDA kernels' index arithmetic in numpy,
ORT CPU sessions standing in for the TensorRT engines. Called from each family's export tests with
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
        if row is not None:
            with pytest.raises(PixelrtError, match="per-row graph"):
                device_loop(HostDevice(step), img, bundle.state, noise, schedule=sched, context=context)
    assert len(np.unique(want.logp)) > n  # real, varied conditionals
