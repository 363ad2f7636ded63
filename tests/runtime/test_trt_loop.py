"""The device-resident loop's plan, tables and per-step bookkeeping, proven on CPU against step_loop."""
from __future__ import annotations

import numpy as np
import pytest

from pixelrt.errors import PixelrtError
from pixelrt.bundle import ImageSpec, StateSpec, StepSchedule
from pixelrt.runtime.ort_backend import OrtBackend
from pixelrt.runtime.sampler import make_noise, step_loop
from pixelrt.runtime.trt_host import HostDevice
from pixelrt.runtime.trt_loop import device_loop, plan_buffers, step_tables


@pytest.mark.parametrize("which", ["grey_bundle", "rgb_bundle"])
def test_host_device_equals_step_loop_sampling_and_teacher_forcing(which, request):
    _, bundle = request.getfixturevalue(which)
    noise = make_noise(5, bundle.image, 3)
    x = bundle.reference()["x"]
    with OrtBackend(bundle.graph_path("step")) as step:
        ref = step_loop(step, bundle.image, bundle.state, noise, batch_size=2)
        got = device_loop(HostDevice(step), bundle.image, bundle.state, noise, batch_size=2)
        np.testing.assert_array_equal(got.images, ref.images)
        np.testing.assert_array_equal(got.logp, ref.logp)
        nz = make_noise(len(x), bundle.image, 0)
        tf = device_loop(HostDevice(step), bundle.image, bundle.state, nz, force=x, batch_size=3)
    np.testing.assert_array_equal(tf.images, x)
    np.testing.assert_array_equal(tf.logp, step_loop(OrtBackend(bundle.graph_path("step")).activate(), bundle.image,
                                                     bundle.state, nz, force=x, batch_size=3).logp)


def test_tables_follow_raster_order_and_noise_slices():
    image, sched = ImageSpec(3, 2, 3, 8), StepSchedule(1, 2)
    noise = make_noise(4, image, 0, sched)
    force = np.random.default_rng(0).integers(0, 8, (4, 3, 2, 3)).astype(np.uint8)
    t = step_tables(image, sched, noise, force, pingpong=True)
    assert t.positions.tolist() == [[i, j, 0] for i in range(2) for j in range(3)]
    np.testing.assert_array_equal(t.noise[4].reshape(4, 2), noise[:, :, 1, 1])  # step 4 = pixel (1, 1)
    np.testing.assert_array_equal(t.force[5].reshape(4, 3), force[:, :, 1, 2])
    assert t.parity.tolist() == [0, 1, 0, 1, 0, 1]
    per_channel = step_tables(ImageSpec(3, 1, 2, 8), StepSchedule(3), make_noise(2, ImageSpec(3, 1, 2, 8), 0), None, True)
    assert per_channel.parity.tolist() == [0, 0, 0, 1, 1, 1] and (per_channel.force == -1).all()


def _io(state, B=None):
    ins = {"pixel": (np.int64, ("batch", 3)), "row": (np.int64, ()), "col": (np.int64, ()),
           "channel": (np.int64, ()), "force": (np.int64, ("batch",)), "noise": (np.float32, ("batch",))}
    outs = {"value": (np.int64, ("batch",)), "logp": (np.float32, ("batch",))}
    for s in state:
        ins[s.name] = (np.float32, s.shape)
        outs[s.source] = (np.float32, s.shape if s.update == "replace" else ("batch", s.shape[1], s.shape[-1]))
    return ins, outs


def test_buffer_plan_ping_pongs_replace_states_and_never_aliases():
    ring = StateSpec("cache_0", ("batch", 2, 2, 7, 4), "float32", "zeros", "ring-row", "new_0", rows=2, pad=1)
    carry = StateSpec("carry", ("batch", 5), "float32", "zeros", "replace", "carry_out")
    image = ImageSpec(3, 4, 5, 8)
    ins, outs = _io([ring, carry])
    plan = plan_buffers(ins, outs, [ring, carry], 6, StepSchedule(3), image)
    b0, b1 = plan.bind
    assert b0["carry"] == b1["carry_out"] == "state:carry#0" and b0["carry_out"] == b1["carry"] == "state:carry#1"
    assert b0["cache_0"] == b1["cache_0"] == "state:cache_0" and b0["new_0"] == "out:new_0"
    for bind in plan.bind:
        assert not {bind[n] for n in plan.inputs} & {bind[n] for n in plan.outputs}
    assert plan.buffers["state:cache_0"][0] == (6, 2, 2, 7, 4) and plan.buffers["state:carry#1"][0] == (6, 5)
    assert plan.buffers["tab:noise"][0] == (4 * 5 * 3, 6) and plan.buffers["in:row"][0] == ()
    plan.bind[1]["carry_out"] = "state:carry#1"  # an aliasing plan is refused
    with pytest.raises(PixelrtError, match="aliases"):
        plan.check()


def test_row_states_without_the_row_graph_raise_a_clear_error():
    row = StateSpec("rev", ("batch", 4, 2), "float32", "zeros", "row", "rev_out")
    ins, outs = _io([])
    ins["rev"] = (np.float32, row.shape)
    with pytest.raises(PixelrtError, match="per-row graph 'row'.*needs that graph's engine"):
        plan_buffers(ins, outs, [row], 2, StepSchedule(3, row_graph="row"), ImageSpec(3, 2, 2, 4))


class ReplaceGraph:
    """A fake step graph with a `replace` state: carry' = carry + pixel index + 1; value = carry[0] % levels."""

    inputs = {"row": (np.dtype(np.int64), ()), "col": (np.dtype(np.int64), ()), "channel": (np.dtype(np.int64), ()),
              "force": (np.dtype(np.int64), (None,)), "carry": (np.dtype(np.float32), (None, 2))}
    output_names = ["value", "logp", "carry_out"]

    def infer(self, f, check=True):
        k = int(f["row"]) * 3 + int(f["col"])
        value = np.where(f["force"] >= 0, f["force"], f["carry"][:, 0].astype(np.int64) % 7)
        return {"value": value, "logp": -f["carry"][:, 1].copy(),
                "carry_out": f["carry"] + np.float32(k + 1 + int(f["channel"]))}


def test_replace_state_ping_pong_matches_the_host_loop():
    image, sched = ImageSpec(2, 2, 3, 7), StepSchedule(2)
    carry = StateSpec("carry", ("batch", 2), "float32", "zeros", "replace", "carry_out")
    noise = make_noise(3, image, 1)
    ref = step_loop(ReplaceGraph(), image, [carry], noise, schedule=sched)
    got = device_loop(HostDevice(ReplaceGraph()), image, [carry], noise, schedule=sched)
    np.testing.assert_array_equal(got.images, ref.images)
    np.testing.assert_array_equal(got.logp, ref.logp)
    assert len(np.unique(ref.images)) > 2  # the carried state really changes the values


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_ort_iobinding_path_gives_the_plain_results(cuda_graph, rgb_bundle):
    """ort-cuda's IOBinding logic (persistent OrtValues refilled in place when a CUDA graph is on),
    run here with CPU OrtValues: the same samples and log-probs as plain session.run."""
    _, bundle = rgb_bundle
    noise = make_noise(5, bundle.image, 2)
    with OrtBackend(bundle.graph_path("step")) as plain:
        want = step_loop(plain, bundle.image, bundle.state, noise, batch_size=3)
    bound = OrtBackend(bundle.graph_path("step"), cuda_graph=cuda_graph)
    bound.io_device = "cpu"
    with bound:
        bound._infer = bound._infer_bound
        got = step_loop(bound, bundle.image, bundle.state, noise, batch_size=3)  # batches of 3 then 2: re-bound
    np.testing.assert_array_equal(got.images, want.images)
    np.testing.assert_array_equal(got.logp, want.logp)


def test_engine_io_types_are_checked_before_the_kernels_touch_them():
    from pathlib import Path
    from types import SimpleNamespace

    from pixelrt.runtime.trt_device import check_engine_io

    i64, f32, i32 = np.dtype(np.int64), np.dtype(np.float32), np.dtype(np.int32)
    good = SimpleNamespace(path=Path("step.onnx"), inputs={"pixel": (i64, (None, 3)), "noise": (f32, (None,))},
                           outputs={"value": (i64, (None,)), "logp": (f32, (None,))})
    check_engine_io(good)
    bad = SimpleNamespace(path=good.path, inputs=good.inputs, outputs={**good.outputs, "value": (i32, (None,))})
    with pytest.raises(PixelrtError, match="value is int32"):
        check_engine_io(bad)
    with pytest.raises(PixelrtError, match="not a step graph"):
        check_engine_io(SimpleNamespace(path=Path("full.onnx"), inputs={}, outputs={"loglik": (f32, (None,))}))


class LabelGraph:
    """A fake conditional step graph: value = (label + channel) % levels."""

    inputs = {"channel": (np.dtype(np.int64), ()), "label": (np.dtype(np.int64), (None,)),
              "noise": (np.dtype(np.float32), (None,))}
    output_names = ["value", "logp"]

    def infer(self, f, check=True):
        return {"value": (f["label"] + f["channel"]) % 5, "logp": f["noise"] - 1}


def test_context_is_uploaded_per_batch():
    image, sched = ImageSpec(3, 2, 2, 5), StepSchedule(3, context=("label",))
    labels = np.array([4, 1, 3, 0, 2], dtype=np.int64)
    noise = make_noise(5, image, 0, sched)
    got = device_loop(HostDevice(LabelGraph()), image, [], noise, schedule=sched, context={"label": labels},
                      batch_size=2)
    want = step_loop(LabelGraph(), image, [], noise, schedule=sched, context={"label": labels}, batch_size=2)
    np.testing.assert_array_equal(got.images, want.images)
    np.testing.assert_array_equal(got.images[:, 1, 0, 0], (labels + 1) % 5)
    np.testing.assert_array_equal(got.logp, noise - 1)


@pytest.mark.parametrize("arch", ["compute_87", "compute_90"])
def test_loop_kernels_compile_with_nvrtc(arch):
    """The CUDA source of the loop's kernels compiles (NVRTC needs no GPU; skipped without cuda-python)."""
    try:
        from cuda.bindings import nvrtc
    except ImportError:
        pytest.skip("needs cuda-python with NVRTC (pip install pixelrt[gpu]); not installed here")
    from pixelrt.runtime.trt_kernels import KERNEL_NAMES, KERNELS

    err, prog = nvrtc.nvrtcCreateProgram(KERNELS.encode(), b"loop.cu", 0, [], [])
    opts = [f"--gpu-architecture={arch}".encode(), b"-default-device"]
    assert int(nvrtc.nvrtcCompileProgram(prog, len(opts), opts)[0]) == 0
    _, size = nvrtc.nvrtcGetPTXSize(prog)
    ptx = b" " * size
    nvrtc.nvrtcGetPTX(prog, ptx)
    entries = [line.split()[-1].rstrip("(") for line in ptx.decode().splitlines() if ".entry" in line]
    assert entries == KERNEL_NAMES


@pytest.mark.parametrize("which", ["grey_bundle", "rgb_bundle"])
def test_memory_estimate_equals_the_device_plan(which, request):
    from tests.runtime.device_emulation import assert_memory_estimate_covers_the_plan

    _, bundle = request.getfixturevalue(which)
    with OrtBackend(bundle.graph_path("step")) as step:
        assert_memory_estimate_covers_the_plan(bundle, HostDevice(step))


def test_a_context_input_no_graph_reads_is_not_uploaded():
    image, sched = ImageSpec(3, 2, 2, 5), StepSchedule(3, context=("label", "unused"))
    ctx = {"label": np.array([4, 1], dtype=np.int64), "unused": np.zeros((2, 3), dtype=np.float32)}
    noise = make_noise(2, image, 0, sched)
    got = device_loop(HostDevice(LabelGraph()), image, [], noise, schedule=sched, context=ctx)
    want = step_loop(LabelGraph(), image, [], noise, schedule=sched, context=ctx)
    np.testing.assert_array_equal(got.images, want.images)
