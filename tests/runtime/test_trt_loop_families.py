"""The device loop's row-graph plan on hand-made graphs: a row graph that reads a ping-ponged
``replace`` state (the row parity), in-place row states, the copies back, and the plan's refusals.

The exported families (Gated PixelCNN, Diagonal BiLSTM, PixelCNN++) are checked through the emulated
device by :func:`tests.runtime.device_emulation.assert_device_plan_matches_bundle_loop`, called from
their export tests with the bundles those already export."""
from __future__ import annotations

import numpy as np
import pytest

from pixelrt.errors import PixelrtError
from pixelrt.bundle import ImageSpec, StateSpec, StepSchedule
from pixelrt.runtime.sampler import make_noise, step_loop
from pixelrt.runtime.trt_host import HostDevice
from pixelrt.runtime.trt_loop import device_loop, plan_buffers, step_tables


# -- a row graph that reads a ping-ponged `replace` state: the row parity (no exported family does this) --
F32, I64 = np.dtype(np.float32), np.dtype(np.int64)


class CarryStep:
    """value = (carry[0] + acc[col]) % 7 (or forced); carry' = carry + pixel index + 1 + acc[0]."""

    inputs = {"row": (I64, ()), "col": (I64, ()), "force": (I64, (None,)), "carry": (F32, (None, 2)),
              "acc": (F32, (None, 4))}
    outputs = {"value": (I64, (None,)), "logp": (F32, (None,)), "carry_out": (F32, (None, 2))}
    output_names = list(outputs)

    def __init__(self, width):
        self.width = width

    def infer(self, f, check=True):
        k = int(f["row"]) * self.width + int(f["col"])
        sampled = (f["carry"][:, 0] + f["acc"][:, int(f["col"]) % 4]).astype(np.int64) % 7
        return {"value": np.where(f["force"] >= 0, f["force"], sampled), "logp": -f["carry"][:, 1] / (k + 1),
                "carry_out": f["carry"] + np.float32(k + 1) + f["acc"][:, :1]}


class CarryRow:
    """acc' = acc + (row + 1) * sum(row pixels) + carry[1] (per image)."""

    inputs = {"row_pixels": (I64, (None, 1, None)), "row": (I64, ()), "carry": (F32, (None, 2)),
              "acc": (F32, (None, 4))}
    outputs = {"acc_out": (F32, (None, 4))}
    output_names = ["acc_out"]

    def infer(self, f, check=True):
        total = f["row_pixels"].sum(axis=(1, 2)).astype(np.float32)
        return {"acc_out": f["acc"] + np.float32(f["row"] + 1) * total[:, None] + f["carry"][:, 1:2]}


@pytest.mark.parametrize("width", [3, 4])  # odd width: the current replace buffer alternates per row
def test_row_graph_reading_a_replace_state_follows_its_parity(width):
    image = ImageSpec(1, 4, width, 7)
    CarryRow.inputs["row_pixels"] = (I64, (None, 1, width))
    state = [StateSpec("carry", ("batch", 2), "float32", "zeros", "replace", "carry_out"),
             StateSpec("acc", ("batch", 4), "float32", "zeros", "row", "acc_out")]
    sched = StepSchedule(1, row_graph="row")
    noise = make_noise(3, image, 1, sched)
    want = step_loop(CarryStep(width), image, state, noise, schedule=sched, row_runner=CarryRow(), batch_size=2)
    got = device_loop(HostDevice(CarryStep(width), CarryRow()), image, state, noise, schedule=sched, batch_size=2)
    np.testing.assert_array_equal(got.images, want.images)
    np.testing.assert_array_equal(got.logp, want.logp)
    assert len(np.unique(want.images)) > 2
    tables = step_tables(image, sched, noise, None, pingpong=True)
    assert tables.row_parity.tolist() == ([1, 0, 1, 0] if width == 3 else [0, 0, 0, 0])


def test_row_plan_binds_row_states_in_place_and_copies_the_outputs_back():
    image = ImageSpec(1, 4, 3, 7)
    CarryRow.inputs["row_pixels"] = (I64, (None, 1, 3))
    state = [StateSpec("carry", ("batch", 2), "float32", "zeros", "replace", "carry_out"),
             StateSpec("acc", ("batch", 4), "float32", "zeros", "row", "acc_out")]
    sched = StepSchedule(1, row_graph="row")
    plan = plan_buffers(CarryStep.inputs, CarryStep.outputs, state, 5, sched, image, CarryRow.inputs, CarryRow.outputs)
    assert plan.bind[0]["acc"] == plan.bind[1]["acc"] == plan.row_bind[0]["acc"] == "state:acc"
    assert plan.row_bind[0]["carry"] == "state:carry#0" and plan.row_bind[1]["carry"] == "state:carry#1"
    assert plan.row_copies == [("rowout:acc_out", "state:acc")]
    assert plan.buffers["rowin:row_pixels"] == ((5, 1, 3), I64) and plan.buffers["rowout:acc_out"][0] == (5, 4)
    bad = dict(CarryRow.outputs, acc_out=(F32, (None, 3)))
    with pytest.raises(PixelrtError, match="output 'acc_out' is float32 \\[5, 3\\] but state acc"):
        plan_buffers(CarryStep.inputs, CarryStep.outputs, state, 5, sched, image, CarryRow.inputs, bad)
    with pytest.raises(PixelrtError, match="row graph's input 'mystery'"):
        plan_buffers(CarryStep.inputs, CarryStep.outputs, state, 5, sched, image,
                     {**CarryRow.inputs, "mystery": (F32, (None,))}, CarryRow.outputs)


def test_step_backends_hands_the_row_graph_to_a_device_loop_backend(monkeypatch, tmp_path):
    """`trt`: the step backend gets the row backend and bundle_loop receives no separate row runner."""
    from types import SimpleNamespace

    import pixelrt.runtime.backends as backends
    from pixelrt.runtime.sampler import bundle_loop

    class Fake:
        def __init__(self, path):
            self.path = path

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    class FakeDeviceStep(Fake):
        row_backend = None

        def bundle_loop(self, bundle, noise, **kwargs):
            return ("device loop", self.row_backend.path, kwargs.get("row"))

    sched = StepSchedule(1, row_graph="row")
    bundle = SimpleNamespace(step_schedule=sched, context=(), graph_path=lambda g: tmp_path / f"{g}.onnx")
    monkeypatch.setattr(backends, "open_backend", lambda rt, p: (FakeDeviceStep if p.stem == "step" else Fake)(p))
    with backends.step_backends("trt", bundle) as (step, row):
        assert row is None and step.row_backend.path.stem == "row"
        assert bundle_loop(step, row, bundle, np.zeros((1, 1, 1, 1), np.float32)) == ("device loop", tmp_path / "row.onnx", None)
    monkeypatch.setattr(backends, "open_backend", lambda rt, p: Fake(p))
    with backends.step_backends("ort", bundle) as (step, row):  # host loops get both runners
        assert row.path.stem == "row"
