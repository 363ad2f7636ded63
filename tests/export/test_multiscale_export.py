"""Multi-scale bundle: one export (module fixture), then ORT == PyTorch, step == full for both stages,
summed sample log-probs == full log-likelihood, sha256 over the stages' files."""
import shutil

import numpy as np
import pytest
import torch

from pixelrt.errors import BundleError
from pixelrt.models.multiscale import MultiScale, MultiScaleConfig, coarsen
from pixelrt.bundle import ImageSpec, load_bundle
from pixelrt.runtime.multiscale import bias_field, evaluate_multiscale, open_multiscale, sample_multiscale
from pixelrt.runtime.ort_backend import OrtBackend

BPD_BUDGET, LOGP_BUDGET = 1e-5, 1e-4
LEVELS = 16


@pytest.fixture(scope="module")
def exported(multiscale_bundle):
    return multiscale_bundle  # tests/conftest.py: 1x8x8, 5 levels, the same tiny model


def test_manifest_is_one_bundle_with_stages(exported):
    _, bundle, check, _ = exported
    assert bundle.kind == "multiscale"
    files = set(bundle.manifest.files)
    for stage in ("stage1", "stage2"):
        assert {f"{stage}/full.onnx", f"{stage}/step.onnx", f"{stage}/manifest.json"} <= files
    assert "cond.onnx" in files
    ms = open_multiscale(bundle)
    assert ms.stage1.image.shape == (1, 4, 4) and ms.stage2.image.shape == (1, 8, 8)
    assert ms.stage2.context == ("bias",) and ms.stage1.context == ()
    from pixelrt.export.validator import validation_record

    assert check.ok and check.row("full_max_dbpd").max <= BPD_BUDGET
    assert check.row("stage2.full_max_dlogp").max <= LOGP_BUDGET and check.row("cond_max_dbias").max <= LOGP_BUDGET
    for stage in ("stage1", "stage2"):  # both stages' step loops teacher-forced against their full graphs
        assert check.row(f"{stage}.step_vs_full_max_dlogp").max <= LOGP_BUDGET
    assert bundle.manifest.validation == validation_record(check)


def test_ort_eval_equals_pytorch(exported):
    model, bundle, _, x = exported
    x = np.concatenate([x, np.random.default_rng(1).integers(0, LEVELS, (2, 1, 8, 8)).astype(np.uint8)])
    res = evaluate_multiscale(open_multiscale(bundle), x, batch_size=2)
    with torch.no_grad():
        p1, p2 = model.log_prob_parts(torch.from_numpy(x))
    ll1, ll2 = p1.double().flatten(1).sum(1).numpy(), p2.double().flatten(1).sum(1).numpy()
    assert np.abs(res.loglik1 - ll1).max() <= LOGP_BUDGET * 16
    assert np.abs(res.bits_per_dim - bundle.image.bits_per_dim(ll1 + ll2)).max() <= BPD_BUDGET


def test_teacher_forced_steps_equal_full_for_both_stages(exported):
    model, bundle, _, x = exported
    res = sample_multiscale(open_multiscale(bundle), len(x), seed=0, force=x)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        p1, p2 = model.log_prob_parts(xt)
    assert np.array_equal(res.images, x) and np.array_equal(res.coarse, coarsen(xt).numpy())
    assert np.abs(res.logp1 - p1.numpy()).max() <= LOGP_BUDGET
    assert np.abs(res.logp2 - p2.numpy()).max() <= LOGP_BUDGET


def test_sampled_logp_sums_to_the_full_loglik_of_the_pair(exported):
    """Free sampling draws (c, x); the step log-probs must equal both stages' full graphs on that pair."""
    _, bundle, _, _ = exported
    ms = open_multiscale(bundle)
    s = sample_multiscale(ms, 4, seed=3, batch_size=3)
    again = sample_multiscale(ms, 4, seed=3, batch_size=4)
    assert np.array_equal(s.images, again.images) and np.array_equal(s.coarse, again.coarse)
    with OrtBackend(ms.top.graph_path("cond")) as cond:
        bias = bias_field(cond, s.coarse)
    with OrtBackend(ms.stage1.graph_path("full")) as f1:
        full1 = f1.infer({"x": s.coarse})
    with OrtBackend(ms.stage2.graph_path("full")) as f2:
        full2 = f2.infer({"x": s.images, "bias": bias})
    assert np.abs(s.logp1 - full1["logp"]).max() <= LOGP_BUDGET
    assert np.abs(s.logp2 - full2["logp"]).max() <= LOGP_BUDGET
    total = full1["loglik"].astype(np.float64) + full2["loglik"]
    assert np.abs(bundle.image.bits_per_dim(s.loglik) - bundle.image.bits_per_dim(total)).max() <= BPD_BUDGET


def test_tampered_stage_file_is_refused(exported, tmp_path):
    _, bundle, _, _ = exported
    copy = tmp_path / "b"
    shutil.copytree(bundle.root, copy)
    with open(copy / "stage2" / "step.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="sha256 mismatch"):
        load_bundle(copy)
    (copy / "stage1" / "full.onnx").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(copy)


def test_stage_bundle_is_not_multiscale(exported):
    _, bundle, _, _ = exported
    with pytest.raises(BundleError, match="not a multi-scale"):
        open_multiscale(bundle.root / "stage1")


def test_cli_sample_and_eval_of_a_multiscale_bundle_without_torch(exported, tmp_path):
    """`pixelrt sample` and the reference-batch eval in an interpreter where torch cannot be imported."""
    import json
    import subprocess
    import sys

    from tests.runtime.test_no_torch import BLOCKER, _env, _forbidden, _modules

    _, bundle, _, _ = exported
    script = BLOCKER + (
        "import sys, json\n"
        "from pixelrt.cli import main\n"
        "from pixelrt.runtime.multiscale import evaluate_multiscale, open_multiscale\n"
        "assert main(['sample', sys.argv[1], '-n', '2', '-o', 's.png', '--no-progress']) == 0\n"
        "b = open_multiscale(sys.argv[1]); ref = b.top.reference()\n"
        "print(json.dumps(evaluate_multiscale(b, ref['x']).loglik.tolist()))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(bundle.root)], capture_output=True, text=True,
                          env=_env(tmp_path), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert np.abs(np.array(got) - list(bundle.manifest.reference.loglik_nats)).max() <= LOGP_BUDGET * 64
    assert (tmp_path / "s.png").is_file()
    assert _forbidden(_modules(tmp_path)["modules"]) == []


def test_malformed_parts_block_is_a_bundle_error(exported, tmp_path):
    import json

    _, bundle, _, _ = exported
    copy = tmp_path / "b"
    shutil.copytree(bundle.root, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["parts"]["stage2"]["context"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"parts\.stage2\.context is missing"):
        open_multiscale(copy)
    manifest = json.loads((bundle.root / "manifest.json").read_text())
    del manifest["graphs"]["cond"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="cond"):
        load_bundle(copy)


def test_tensorrt_parser_check_passes_on_every_part(exported):
    """doctor on the cond graph and both stages' graphs: nothing TensorRT's ONNX parser would refuse."""
    from tests.runtime.device_emulation import assert_tensorrt_parser_check_passes

    ms = open_multiscale(exported[1])
    for part in (ms.top, ms.stage1, ms.stage2):
        assert_tensorrt_parser_check_passes(part)
