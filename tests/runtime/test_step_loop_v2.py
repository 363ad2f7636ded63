"""The generalised step loop, driven by fake numpy runners so the host logic is checked exactly:
whole-pixel sub-steps with several uniforms each, per-image context, `replace` states and the
per-row graph with its `row` states."""
from __future__ import annotations

import numpy as np
import pytest

from pixelrt.errors import BundleError

from pixelrt.errors import PixelrtError
from pixelrt.bundle import ImageSpec, StateSpec, StepSchedule
from pixelrt.runtime.sampler import make_noise, step_loop


class Recorder:
    """Fake step graph: records every feed and answers with ``fn(feeds) -> (value, logp, extra outputs)``."""

    def __init__(self, names, fn):
        self.input_names, self.fn, self.calls = names, fn, []

    def infer(self, feeds, check=True):
        assert set(feeds) == set(self.input_names), "the loop must feed exactly the declared inputs"
        self.calls.append({k: np.array(v, copy=True) for k, v in feeds.items()})
        return self.fn(feeds)


def test_whole_pixel_substeps_get_their_noise_slice_and_write_every_channel():
    image, sched = ImageSpec(3, 2, 3, 16), StepSchedule(substeps_per_pixel=1, noise_per_substep=4)
    noise = make_noise(5, image, 0, sched)
    assert noise.shape == (5, 4, 2, 3)

    def fn(f):  # value of channel c = (row*W + col + c) % levels; logp encodes the same
        B = len(f["force"])
        v = np.stack([np.full(B, (int(f["row"]) * 3 + int(f["col"]) + c) % 16) for c in range(3)], 1)
        return {"value": v, "logp": -v.astype(np.float32)}

    run = Recorder(["noise", "force", "row", "col", "pixel"], fn)
    res = step_loop(run, image, [], noise, schedule=sched, batch_size=2)
    assert len(run.calls) == 3 * 6  # three batches x six pixels: one call per pixel
    expect = (np.arange(6).reshape(2, 3)[None] + np.arange(3)[:, None, None]) % 16
    np.testing.assert_array_equal(res.images, np.broadcast_to(expect, (5, 3, 2, 3)))
    np.testing.assert_array_equal(res.logp, -res.images.astype(np.float32))
    first = run.calls[0]
    assert first["force"].shape == (2, 3) and (first["force"] == -1).all()
    np.testing.assert_array_equal(first["noise"], noise[:2, :, 0, 0])  # (B, K) slice of pixel (0, 0)
    np.testing.assert_array_equal(run.calls[5]["noise"], noise[:2, :, 1, 2])


def test_teacher_forcing_with_whole_pixel_substeps_feeds_the_true_pixel():
    image, sched = ImageSpec(3, 2, 2, 8), StepSchedule(1, 2)
    x = np.random.default_rng(1).integers(0, 8, (3, 3, 2, 2)).astype(np.uint8)
    run = Recorder(["force"], lambda f: {"value": f["force"], "logp": np.zeros(f["force"].shape, np.float32)})
    res = step_loop(run, image, [], make_noise(3, image, 0, sched), force=x, schedule=sched)
    np.testing.assert_array_equal(res.images, x)


def test_per_channel_substeps_see_earlier_channels_of_the_pixel():
    image = ImageSpec(3, 1, 2, 10)

    def fn(f):  # channel c samples 1 + the sum of the channels before it
        return {"value": f["pixel"].sum(1) + 1, "logp": np.zeros(len(f["pixel"]), np.float32)}

    res = step_loop(Recorder(["pixel", "channel"], fn), image, [], make_noise(2, image, 0))
    np.testing.assert_array_equal(res.images[:, :, 0, 0], [[1, 2, 4]] * 2)


def test_context_is_sliced_per_batch_and_fed_to_every_call():
    image, sched = ImageSpec(1, 2, 2, 10), StepSchedule(1, context=("label",))
    labels = np.array([3, 1, 4, 1, 5], dtype=np.int64)
    run = Recorder(["label", "noise"], lambda f: {"value": f["label"], "logp": np.zeros(len(f["label"]), np.float32)})
    res = step_loop(run, image, [], make_noise(5, image, 0, sched), schedule=sched, context={"label": labels},
                    batch_size=2)
    np.testing.assert_array_equal(res.images[:, 0, 1, 1], labels)
    with pytest.raises(PixelrtError, match="conditional: it needs label"):
        step_loop(run, image, [], make_noise(5, image, 0, sched), schedule=sched)
    with pytest.raises(PixelrtError, match="one entry per image"):
        step_loop(run, image, [], make_noise(5, image, 0, sched), schedule=sched, context={"label": labels[:2]})
    with pytest.raises(PixelrtError, match="takes no label .*unconditional"):
        step_loop(run, image, [], make_noise(5, image, 0), context={"label": labels})


def test_replace_state_carries_from_pixel_to_pixel():
    image = ImageSpec(1, 2, 3, 100)
    state = [StateSpec("count", ("batch", 1), "float32", "zeros", "replace", "count_out")]

    def fn(f):  # value = pixels done so far in raster order; the state counts them
        c = f["count"]
        return {"value": c[:, 0].astype(np.int64), "logp": np.zeros(len(c), np.float32), "count_out": c + 1}

    res = step_loop(Recorder(["count"], fn), image, state, make_noise(2, image, 0))
    np.testing.assert_array_equal(res.images[0, 0], np.arange(6).reshape(2, 3))


def test_row_graph_runs_after_each_row_and_feeds_the_next_row():
    image, sched = ImageSpec(1, 3, 2, 50), StepSchedule(1, row_graph="row")
    state = [StateSpec("above", ("batch", 2), "int64", "zeros", "row", "above_out")]

    def step(f):  # value = 1 + (sum of the row above, as the row graph reported it) + col
        v = 1 + f["above"].sum(1) + int(f["col"])
        return {"value": v, "logp": np.zeros(len(v), np.float32)}

    rows_seen = []

    def row(f):
        rows_seen.append(int(f["row"]))
        return {"above_out": f["row_pixels"][:, 0, :].astype(np.int64)}

    res = step_loop(Recorder(["above", "col"], step), image, state, make_noise(2, image, 0), schedule=sched,
                    row_runner=Recorder(["row_pixels", "row", "above"], row))
    assert rows_seen == [0, 1, 2]
    np.testing.assert_array_equal(res.images[0, 0], [[1, 2], [4, 5], [10, 11]])
    with pytest.raises(PixelrtError, match="per-row graph; pass row_runner"):
        step_loop(Recorder(["above", "col"], step), image, state, make_noise(2, image, 0), schedule=sched)


def test_noise_shape_follows_the_schedule():
    image, sched = ImageSpec(3, 2, 2, 8), StepSchedule(1, 5)
    with pytest.raises(PixelrtError, match=r"expected \(2, 5, 2, 2\)"):
        step_loop(None, image, [], make_noise(2, image, 0), schedule=sched)


@pytest.mark.parametrize("bad", [
    {"substeps_per_pixel": 2},          # 3 channels do not split into 2 sub-steps
    {"substeps_per_pixel": 3, "noise_per_substep": 0},
])
def test_malformed_schedule_is_rejected(bad):
    with pytest.raises(BundleError, match=r"schedule\.(substeps_per_pixel \(2\) must divide the 3 channels|"
                                          r"noise_per_substep must be an integer in 1\.\.1024, got 0)"):
        StepSchedule.from_json({**StepSchedule(3).to_json(), **bad}, 3)


def test_state_kinds_round_trip_through_json():
    specs = [StateSpec("a", ("batch", 2, 2, 7, 4), "float32", "zeros", "ring-row", "new_a", 2, 1),
             StateSpec("b", ("batch", 5), "float32", "zeros", "replace", "b_out"),
             StateSpec("c", ("batch", 3, 4), "float32", "zeros", "row", "c_out")]
    for s in specs:
        assert StateSpec.from_json(s.to_json()) == s
    with pytest.raises(BundleError, match=r"state\.update\.kind must be one of 'ring-row', .*got 'stack'"):
        StateSpec.from_json({**specs[1].to_json(), "update": {"kind": "stack", "from_output": "x"}})
