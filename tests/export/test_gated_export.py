"""Gated PixelCNN bundles (full + step + row graphs, context inputs) against PyTorch: ORT == PyTorch,
step == full, summed sample log p == full log-likelihood, grey unconditional and RGB conditioned on a
label and a spatial map; the runtime's conditioning checks."""
import numpy as np
import pytest
import torch

from pixelrt.errors import PixelrtError
from pixelrt.export.validator import BPD_BUDGET, LOGP_BUDGET
from pixelrt.models.reference import TorchRowRunner, TorchStepRunner
from pixelrt.runtime.backends import step_backends
from pixelrt.bundle import ImageSpec
from pixelrt.runtime.evaluate import evaluate
from pixelrt.runtime.ort_backend import OrtBackend
from pixelrt.runtime.sampler import bundle_loop, make_noise
from tests.models.test_gated import context, tiny_gated


def _export(tmp_path_factory, channels, mode, shape, levels, name):
    from pixelrt.export import export_bundle

    model = tiny_gated(channels, levels=levels, mode=mode, shape=shape)
    image = ImageSpec(channels, *shape, levels)
    x = np.random.default_rng(1).integers(0, levels, (5, *image.shape)).astype(np.uint8)
    ctx = {k: v.numpy() for k, v in context(model, 5, seed=4).items()}
    out = tmp_path_factory.mktemp(name) / "bundle"
    return model, export_bundle(model, image, x, out, log=lambda s: None, context=ctx).bundle


@pytest.fixture(scope="module")
def grey_none(tmp_path_factory):
    return _export(tmp_path_factory, 1, "none", (4, 5), 7, "gated-grey")


@pytest.fixture(scope="module")
def rgb_both(tmp_path_factory):
    return _export(tmp_path_factory, 3, "both", (4, 4), 5, "gated-rgb")


@pytest.fixture(params=["grey_none", "rgb_both"])
def pair(request):
    return request.getfixturevalue(request.param)


def _data(model, bundle, n, seed):
    x = np.random.default_rng(seed).integers(0, bundle.image.levels, (n, *bundle.image.shape)).astype(np.uint8)
    return x, {k: v.numpy() for k, v in context(model, n, seed=seed).items()}


def test_manifest_declares_row_graph_row_states_and_context(pair):
    model, bundle = pair
    sched = bundle.step_schedule
    assert sched.row_graph == "row" and sched.context == tuple(model.context_names)
    kinds = {s.name: s.update for s in bundle.state}
    assert kinds == {"cache_0": "ring-row", "cache_1": "ring-row", "vrows_0": "row", "vrows_1": "row", "link": "row"}
    assert set(bundle.graphs["row"].input_names()) == {"row_pixels", "row", "vrows_0", "vrows_1", *model.context_names}
    for name in model.context_names:
        assert name in bundle.graphs["full"].input_names() and name in bundle.graphs["step"].input_names()
    v = bundle.manifest.validation
    assert max(v[k] for k in ("row_max_dnew_vrows_0", "row_max_dnew_vrows_1", "row_max_dnew_link")) <= LOGP_BUDGET
    import onnx

    for key, spec in bundle.graphs.items():  # the manifest's I/O is the graphs' I/O
        graph = onnx.load(str(bundle.graph_path(key))).graph
        assert {i.name for i in graph.input} == set(spec.input_names()), key
        assert {o.name for o in graph.output} == set(spec.output_names()), key


@pytest.mark.parametrize("batch", [1, 3])
def test_full_graph_matches_pytorch(pair, batch):
    model, bundle = pair
    x, ctx = _data(model, bundle, batch, seed=batch)
    with OrtBackend(bundle.graph_path("full")) as full:
        res = evaluate(full, bundle, x, context=ctx)
    with torch.no_grad():
        ref = model.log_prob(torch.from_numpy(x), **{k: torch.from_numpy(v) for k, v in ctx.items()}).numpy()
    assert np.abs(res.bits_per_dim - bundle.image.bits_per_dim(ref.reshape(batch, -1).sum(1))).max() <= BPD_BUDGET
    assert np.abs(res.logp - ref).max() <= LOGP_BUDGET


def test_step_graph_teacher_forced_equals_full_graph(pair):
    model, bundle = pair
    x, ctx = _data(model, bundle, 4, seed=11)
    with step_backends("ort", bundle) as (step, row), OrtBackend(bundle.graph_path("full")) as full:
        tf = bundle_loop(step, row, bundle, make_noise(4, bundle.image, 0), force=x, context=ctx, batch_size=3)
        res = evaluate(full, bundle, x, context=ctx)
    assert np.array_equal(tf.images, x)
    assert np.abs(tf.logp - res.logp).max() <= LOGP_BUDGET


def test_sampled_images_summed_step_logp_equals_full_loglik_and_pytorch_samples(pair):
    model, bundle = pair
    _, ctx = _data(model, bundle, 5, seed=5)
    noise = make_noise(5, bundle.image, 5, bundle.step_schedule)
    with step_backends("ort", bundle) as (step, row), OrtBackend(bundle.graph_path("full")) as full:
        s = bundle_loop(step, row, bundle, noise, context=ctx, batch_size=4)
        res = evaluate(full, bundle, s.images, context=ctx)
    assert np.abs(bundle.image.bits_per_dim(s.loglik) - res.bits_per_dim).max() <= BPD_BUDGET
    t = bundle_loop(TorchStepRunner(model, bundle.image), TorchRowRunner(model, bundle.image), bundle, noise, context=ctx)
    assert (t.images == s.images).mean() >= 0.9  # ties at float boundaries may flip a sub-pixel, rarely


def test_runtime_checks_conditioning_before_the_graphs(rgb_both, grey_none):
    model, bundle = rgb_both
    x, ctx = _data(model, bundle, 2, seed=0)
    noise = make_noise(2, bundle.image, 0)
    with step_backends("ort", bundle) as (step, row):
        with pytest.raises(PixelrtError, match="needs cond"):
            bundle_loop(step, row, bundle, noise, context={"label": ctx["label"]})
        with pytest.raises(PixelrtError, match=r"0\.\.3"):
            bundle_loop(step, row, bundle, noise, context={**ctx, "label": np.array([0, 4])})
        with pytest.raises(PixelrtError, match="shape"):
            bundle_loop(step, row, bundle, noise, context={**ctx, "cond": ctx["cond"][:, :1]})
        with pytest.raises(PixelrtError, match="NaN"):
            bundle_loop(step, row, bundle, noise, context={**ctx, "cond": np.full_like(ctx["cond"], np.nan)})
    grey_model, grey = grey_none
    gx, _ = _data(grey_model, grey, 2, seed=0)
    with OrtBackend(grey.graph_path("full")) as full:
        with pytest.raises(PixelrtError, match="takes no label"):
            evaluate(full, grey, gx, context={"label": ctx["label"]})


def test_parity_report_with_labels_and_maps_is_within_budget(rgb_both):
    from pixelrt.parity.autoregressive import run_parity

    model, bundle = rgb_both
    x, ctx = _data(model, bundle, 3, seed=8)
    _, sample_ctx = _data(model, bundle, 2, seed=9)
    report = run_parity(model, bundle, x, samples=2, teacher=2, context=ctx, sample_context=sample_ctx,
                        log=lambda s: None)
    assert report.ok, report.table()
    assert any("step vs full" in r.check for r in report.rows)


def test_emulated_device_loop_plan_equals_bundle_loop(pair):
    """--runtime trt's device loop (ring-row + row states, context), emulated on CPU: bit-identical."""
    from tests.runtime.device_emulation import assert_device_plan_matches_bundle_loop

    model, bundle = pair
    assert_device_plan_matches_bundle_loop(bundle, _data(model, bundle, 5, seed=6)[1])


def test_every_graph_passes_the_tensorrt_parser_check(pair):
    from tests.runtime.device_emulation import assert_tensorrt_parser_check_passes

    assert_tensorrt_parser_check_passes(pair[1])


def test_step_graph_node_count(grey_none):
    """The step graph after ORT's optimiser: 8 nodes per layer (the centre Gemm taking the layer's link +
    cached taps + bias as its C input, the gate's Split, Tanh, Sigmoid, Mul, the output Gemm, the residual
    Add and the Squeeze of its C slice) and 52 more. Measured: 116 for gated28's 8 layers, 76 for this
    3-layer one; before (the link, taps and biases added per layer, the gate as Reshape + Gather + Squeeze,
    a channel pick for one channel) 182 and 102. Counts, never times."""
    from pixelrt.bench.step_speed import node_counts

    model, bundle = grey_none
    counts = node_counts(bundle.graph_path("step"), threads=1)
    assert counts["optimized"] <= 52 + 8 * model.config.layers, counts
    assert counts["optimized_ops"].get("Squeeze", 0) <= model.config.layers + 2, counts
