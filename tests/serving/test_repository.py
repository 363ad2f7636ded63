"""`pixelrt triton`: configs written from the manifest and parsed against Triton's own model-config schema
(tritonclient's model_config_pb2), and the repository written atomically. No server needed."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from pixelrt.errors import PixelrtError

model_config = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="the serve extra (tritonclient)")
from pixelrt.serving.config import loglik_config, parameters, parse_config
from pixelrt.serving.repository import check_servable, validate_repository, write_repository


def _dims(t):
    return [int(d) for d in t.dims]


def test_the_ort_backend_repository_is_the_manifest_in_triton_terms(served_bundle, tmp_path):
    repo = write_repository(served_bundle, tmp_path / "repo", "digits", gpu=True, tensorrt=True)
    configs = validate_repository(tmp_path / "repo")  # every config.pbtxt parsed again from disk
    assert sorted(configs) == ["digits_loglik", "digits_sample"] == sorted(repo.configs)
    full = served_bundle.graphs["full"]
    loglik = configs["digits_loglik"]
    assert loglik.platform == "onnxruntime_onnx" and loglik.max_batch_size == 256
    assert [t.name for t in loglik.input] == full.input_names() and [t.name for t in loglik.output] == full.output_names()
    x = loglik.input[0]
    assert x.data_type == model_config.TYPE_UINT8 and _dims(x) == list(full.input("x").shape[1:]) == [1, 8, 8]
    label = loglik.input[1]
    assert label.data_type == model_config.TYPE_INT64 and _dims(label) == [1] and list(label.reshape.shape) == []
    assert _dims(loglik.output[1]) == [1, 8, 8] and list(loglik.output[0].reshape.shape) == []
    assert loglik.instance_group[0].kind == model_config.ModelInstanceGroup.KIND_GPU
    assert loglik.optimization.execution_accelerators.gpu_execution_accelerator[0].name == "tensorrt"
    assert loglik.HasField("dynamic_batching")
    assert (tmp_path / "repo" / "digits_loglik" / "1" / "model.onnx").read_bytes() == \
        served_bundle.graph_path("full").read()
    sample = configs["digits_sample"]
    assert sample.backend == "python" and sample.max_batch_size == 64 and sample.HasField("dynamic_batching")
    assert [t.name for t in sample.input] == ["seed", "label"] and [t.name for t in sample.output] == \
        ["images", "logp", "loglik"]
    assert _dims(sample.output[0]) == [1, 8, 8]
    p = parameters(sample)
    assert p["pixelrt_image"] == "[1,8,8,17]" and p["pixelrt_runtime"] == "ort" and p["pixelrt_merge"] == "true"
    assert '"classes":10' in p["pixelrt_context"]
    copied = tmp_path / "repo" / "digits_sample" / "1"
    assert "SampleModel as TritonPythonModel" in (copied / "model.py").read_text()
    from pixelrt.bundle import load_bundle

    assert load_bundle(copied / "bundle").manifest.files == served_bundle.manifest.files  # verified copy


def test_python_backend_decoupled_and_exact_variants_fit_the_schema(served_bundle, tmp_path):
    repo = write_repository(served_bundle, tmp_path / "r", likelihood_backend="python", merge=False, decoupled=True,
                            instances=2, max_batch=8)
    loglik, sample = repo.configs[repo.loglik_model], repo.configs[repo.sample_model]
    assert loglik.backend == "python" and not loglik.platform
    assert (tmp_path / "r" / repo.loglik_model / "1" / "model.py").is_file()
    assert sample.model_transaction_policy.decoupled and sample.instance_group[0].count == 2
    assert parameters(sample)["pixelrt_merge"] == "false" and sample.max_batch_size == 8


def test_the_schema_check_refuses_what_triton_would(served_bundle):
    good = loglik_config(served_bundle, "m", 4)
    parse_config(good)
    for bad, why in [(good.replace("max_batch_size", "max_batchsize"), "schema"),
                     (good.replace("TYPE_UINT8", "TYPE_UINT9"), "schema"),
                     (good.replace("max_batch_size: 4", "max_batch_size: 0"), "dynamic batching"),
                     (good.replace("dims: [ 1, 8, 8 ]", "dims: [ 1, 0, 8 ]", 1), "dim")]:
        with pytest.raises(PixelrtError, match=why):
            parse_config(bad)
    with pytest.raises(PixelrtError, match="TensorRT accelerator"):
        loglik_config(served_bundle, "m", 4, tensorrt=True)  # no GPU instances


def test_force_replaces_only_a_repository_pixelrt_wrote(served_bundle, tmp_path):
    write_repository(served_bundle, tmp_path / "repo")
    with pytest.raises(PixelrtError, match="already exists"):
        write_repository(served_bundle, tmp_path / "repo")
    write_repository(served_bundle, tmp_path / "repo", max_batch=16, overwrite=True)
    assert validate_repository(tmp_path / "repo")["digits8_sample"].max_batch_size == 16
    (tmp_path / "mine" / "m").mkdir(parents=True)
    (tmp_path / "mine" / "m" / "config.pbtxt").write_text('name: "m"\n')
    with pytest.raises(PixelrtError, match="not a pixelrt"):
        write_repository(served_bundle, tmp_path / "mine", overwrite=True)
    with pytest.raises(PixelrtError, match="not a Triton model repository"):
        validate_repository(tmp_path)


def test_only_autoregressive_bundles_are_served():
    with pytest.raises(PixelrtError, match="serves autoregressive bundles"):
        check_servable(SimpleNamespace(kind="vae", root="bundles/vae"))


def test_the_cli_writes_and_checks_a_repository(served_bundle, tmp_path, capsys):
    from pixelrt.cli import main

    assert main(["triton", str(served_bundle.root), "-o", str(tmp_path / "repo"), "--name", "d"]) == 0
    assert main(["triton-check", str(tmp_path / "repo")]) == 0
    out = capsys.readouterr().out
    assert "d_loglik: onnxruntime_onnx, max_batch_size 256: fits Triton's schema" in out
    assert "d_sample: python, max_batch_size 64: fits Triton's schema" in out
