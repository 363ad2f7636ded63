"""Build profiles, their engine options, the memory estimate, and the GPU commands' errors without a GPU."""
from __future__ import annotations

import numpy as np
import pytest

from pixelrt.cli import main
from pixelrt.errors import PixelrtError
from pixelrt.runtime.trt_profiles import PROFILES, estimate_memory, get_profile, graph_memory, precision_advice


def test_profiles_fit_their_boards():
    nano, agx, server = PROFILES["jetson-orin-nano"], PROFILES["jetson-agx-orin"], PROFILES["server"]
    assert nano.workspace_mib * 2**20 <= 0.25 * nano.board_memory_gib * 2**30  # shared memory: leave room
    assert nano.dla_core is None and agx.dla_core == 0 and server.dla_core is None
    assert nano.precision == agx.precision == "fp16" and server.precision == "fp32"
    assert all(1 <= p.batch[0] <= p.batch[1] <= p.batch[2] for p in PROFILES.values())


def test_options_are_the_engine_key_and_dla_is_for_the_full_graph_only():
    agx = get_profile("jetson-agx-orin")
    full, step = agx.options("full"), agx.options("step")
    assert full["dla_core"] == 0 and full["gpu_fallback"] and step["dla_core"] is None and not step["gpu_fallback"]
    assert full["batch"] == [1, 8, 64] and "precision" not in full  # precision lives in the graph
    parity = agx.with_options(tf32=False, batch_max=4, dla_core=None)
    assert parity.options("full") == {**full, "tf32": False, "batch": [1, 4, 4], "dla_core": None, "gpu_fallback": False}
    assert agx.with_options(dla_core=1).options("full")["dla_core"] == 1
    with pytest.raises(PixelrtError, match="cores 0..1"):
        agx.with_options(dla_core=2)
    with pytest.raises(PixelrtError, match="no DLA"):
        get_profile("jetson-orin-nano").with_options(dla_core=0)
    with pytest.raises(PixelrtError, match="unknown build profile"):
        get_profile("orin")
    with pytest.raises(PixelrtError, match="at least 1"):
        agx.with_options(batch_max=0)


def test_memory_estimate_counts_weights_state_and_workspace(grey_bundle):
    import onnx
    from onnx import numpy_helper

    _, bundle = grey_bundle
    nano = get_profile("jetson-orin-nano")
    est = estimate_memory(bundle, nano)
    from pixelrt.runtime.trt_support import trt_graphs

    assert set(est.weights) == set(bundle.graphs) - {"wave"}  # the wavefront graph runs on ORT only
    for key, spec in trt_graphs(bundle).items():  # weights = the initializers' bytes, computed independently
        model = onnx.load(bundle.root / spec.file)
        want = sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)
        want += sum(numpy_helper.to_array(a.t).nbytes for n in model.graph.node if n.op_type == "Constant"
                    for a in n.attribute if a.name == "value")
        assert est.weights[key] == want > 0
    batch = nano.batch[2]
    want_state = sum(int(np.prod(s.shape[1:])) * 4 * batch for s in bundle.state)  # ring-row: one buffer each
    assert est.state == want_state and est.workspace == 512 * 2**20 and est.batch == 16
    _, acts_1 = graph_memory(bundle.graph_path("full"), 1)
    _, acts_2 = graph_memory(bundle.graph_path("full"), 2)
    # each intermediate tensor is batch-proportional or constant, so the bound is linear in the batch
    assert acts_2 > acts_1 and est.activations["full"] - acts_1 == 15 * (acts_2 - acts_1)
    assert est.total == sum(est.weights.values()) + sum(est.activations.values()) + est.state + est.loop_io + est.workspace
    text = est.table("jetson-orin-nano")
    assert "weights (step)" in text and "of the 4 GiB board: fits" in text
    assert "pixelrt calibrate" in precision_advice(nano, "fp32") and precision_advice(nano, "fp16") is None


def test_gpu_commands_without_a_gpu_name_what_is_missing(grey_bundle, capsys, tmp_path):
    _, bundle = grey_bundle
    assert main(["build-engine", str(bundle.root), "--profile", "jetson-orin-nano"]) == 2
    captured = capsys.readouterr()
    assert "memory estimate at batch 16" in captured.out  # printed before anything needs a GPU
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "TensorRT" in err[0] and "pip install pixelrt[gpu]" in err[0]
    for runtime in ("trt", "ort-trt", "ort-cuda"):
        assert main(["sample", str(bundle.root), "-n", "1", "--runtime", runtime, "-o", str(tmp_path / "s.png")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "pixelrt[gpu]" in err[0], (runtime, err)
        assert not (tmp_path / "s.png").exists()
    assert main(["build-engine", str(bundle.root), "--graphs", "decoder"]) == 2
    assert "no graph 'decoder'; it has: full, step" in capsys.readouterr().err


def test_parity_takes_the_runtime_and_fails_clearly_without_it(grey_bundle):
    from pixelrt.parity.autoregressive import run_parity

    model, bundle = grey_bundle
    x = bundle.reference()["x"]
    for runtime, needs in (("trt", "TensorRT"), ("ort-trt", "TensorrtExecutionProvider")):
        with pytest.raises(PixelrtError, match=needs):
            run_parity(model, bundle, x, samples=1, teacher=1, runtime=runtime, log=lambda s: None)
