"""The step loop through ORT with bound inputs and preallocated outputs (``OrtBackend.bind``) samples and
teacher-forces exactly what the plain ``session.run`` path does (one sub-step per pixel and three).
Row and strided states go through the bound path in the gated and PixelCNN++ export tests."""
import numpy as np
import pytest

from pixelrt.runtime.ort_backend import OrtBackend
from pixelrt.runtime.sampler import make_noise, step_loop


class Plain:
    """The same backend without ``bind``: feed dicts through ``infer`` (session.run)."""

    def __init__(self, backend):
        self.backend, self.input_names = backend, list(backend.inputs)

    def infer(self, feeds, check=True):
        return self.backend.infer(feeds, check=check)


@pytest.mark.parametrize("name,batch_size", [("grey_bundle", 1), ("grey_bundle", 3), ("rgb_bundle", 2)])
def test_bound_loop_equals_plain_loop(request, name, batch_size):
    _, bundle = request.getfixturevalue(name)
    noise = make_noise(4, bundle.image, 2)
    with OrtBackend(bundle.graph_path("step")) as step:
        bound = step_loop(step, bundle.image, bundle.state, noise, batch_size=batch_size)
        plain = step_loop(Plain(step), bundle.image, bundle.state, noise, batch_size=batch_size)
        forced = step_loop(step, bundle.image, bundle.state, noise, force=plain.images, batch_size=batch_size)
    assert np.array_equal(bound.images, plain.images)
    assert np.array_equal(bound.logp, plain.logp)
    assert np.array_equal(forced.images, plain.images) and np.array_equal(forced.logp, plain.logp)


def test_bind_refuses_wrong_feeds(grey_bundle):
    from pixelrt.errors import PixelrtError

    _, bundle = grey_bundle
    with OrtBackend(bundle.graph_path("step")) as step:
        with pytest.raises(PixelrtError, match="inputs do not match"):
            step.bind({"pixel": np.zeros((1, 1), np.int64)}, 1)
