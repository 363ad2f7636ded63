"""Bundle graphs against PyTorch: ORT == PyTorch, step == full, summed sample log p == full log-likelihood."""
import numpy as np
import onnx
import pytest
import torch

from pixelrt.export.validator import BPD_BUDGET, LOGP_BUDGET
from pixelrt.models.reference import TorchStepRunner
from pixelrt.runtime.evaluate import evaluate
from pixelrt.runtime.ort_backend import OrtBackend
from pixelrt.runtime.sampler import make_noise, step_loop


@pytest.fixture(params=["grey_bundle", "rgb_bundle"])
def pair(request):
    return request.getfixturevalue(request.param)


def _images(bundle, n, seed):
    return np.random.default_rng(seed).integers(0, bundle.image.levels, (n, *bundle.image.shape)).astype(np.uint8)


@pytest.mark.parametrize("batch", [1, 3, 17])
def test_full_graph_matches_pytorch_at_batches_it_was_not_traced_with(pair, batch):
    model, bundle = pair
    x = _images(bundle, batch, seed=batch)
    with OrtBackend(bundle.graph_path("full")) as full:
        res = evaluate(full, bundle, x)
    with torch.no_grad():
        ref = model.log_prob(torch.from_numpy(x)).numpy()
    ref_bpd = bundle.image.bits_per_dim(ref.reshape(batch, -1).sum(1))
    assert np.abs(res.bits_per_dim - ref_bpd).max() <= BPD_BUDGET
    assert np.abs(res.logp - ref).max() <= LOGP_BUDGET


def test_reference_loglik_in_manifest_is_reproduced(pair):
    _, bundle = pair
    ref = bundle.reference()
    with OrtBackend(bundle.graph_path("full")) as full:
        res = evaluate(full, bundle, ref["x"])
    assert np.abs(res.loglik - ref["loglik"]).max() < 1e-4
    assert list(bundle.manifest.reference.bits_per_dim) == pytest.approx(list(res.bits_per_dim), abs=1e-6)


def test_step_graph_teacher_forced_equals_full_graph(pair):
    _, bundle = pair
    x = _images(bundle, 4, seed=11)
    with OrtBackend(bundle.graph_path("step")) as step, OrtBackend(bundle.graph_path("full")) as full:
        tf = step_loop(step, bundle.image, bundle.state, make_noise(4, bundle.image, 0), force=x, batch_size=3)
        res = evaluate(full, bundle, x)
    assert np.array_equal(tf.images, x)
    assert np.abs(tf.logp - res.logp).max() <= LOGP_BUDGET


def test_sampled_images_summed_step_logp_equals_full_loglik(pair):
    _, bundle = pair
    with OrtBackend(bundle.graph_path("step")) as step, OrtBackend(bundle.graph_path("full")) as full:
        s = step_loop(step, bundle.image, bundle.state, make_noise(6, bundle.image, 5), batch_size=4)
        res = evaluate(full, bundle, s.images)
    assert np.abs(bundle.image.bits_per_dim(s.loglik) - res.bits_per_dim).max() <= BPD_BUDGET
    assert np.abs(s.logp - res.logp).max() <= LOGP_BUDGET
    assert len(np.unique(s.images)) > 1  # it really sampled, not a constant image


def test_same_seed_same_images_across_runtimes_and_batch_sizes(pair):
    model, bundle = pair
    noise = make_noise(5, bundle.image, 3)
    with OrtBackend(bundle.graph_path("step")) as step:
        a = step_loop(step, bundle.image, bundle.state, noise, batch_size=5)
        b = step_loop(step, bundle.image, bundle.state, noise, batch_size=2)
    c = step_loop(TorchStepRunner(model, bundle.image), bundle.image, bundle.state, noise)
    assert np.array_equal(a.images, b.images)
    assert np.array_equal(a.images, c.images)
    other = step_loop(TorchStepRunner(model, bundle.image), bundle.image, bundle.state, make_noise(5, bundle.image, 4))
    assert not np.array_equal(a.images, other.images)


def test_manifest_describes_graphs_and_state(pair):
    _, bundle = pair
    m = bundle.manifest
    assert m.to_json()["format"] == "pixelrt-bundle" and m.precision == "fp32"
    C, H, W = bundle.image.shape
    for name in ("full", "step"):
        graph = onnx.load(str(bundle.graph_path(name)))
        onnx.checker.check_model(graph)
        assert [i.name for i in graph.graph.input] == bundle.graphs[name].input_names()
        assert [o.name for o in graph.graph.output] == bundle.graphs[name].output_names()
        assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    for s in bundle.state:
        assert s.shape[0] == "batch" and s.shape[3] == W + 2 * s.pad and s.rows == s.pad + 1
    assert m.schedule.substeps_per_pixel == C
    assert all(len(meta.sha256) == 64 for meta in m.files.values())
    assert m.validation["full_max_dbpd"] <= BPD_BUDGET
    # every graph carries the bundle's identity (metadata_props), so a graph of another bundle is refused
    for name in ("full", "step"):
        props = {p.key: p.value for p in onnx.load(str(bundle.graph_path(name))).metadata_props}
        assert props["pixelrt.graph"] == name and props["pixelrt.image"] == f"{C}x{H}x{W}"
        assert props["pixelrt.levels"] == str(bundle.image.levels) and props["pixelrt.kind"] == "autoregressive"
    # the full graph holds pre-masked kernels: no mask tensors and no Mul on weights at run time
    full = onnx.load(str(bundle.graph_path("full")))
    assert not [i.name for i in full.graph.initializer if i.name.endswith("mask")]
