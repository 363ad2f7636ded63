"""A real tritonserver on loopback (tests/serving/conftest.py): the served samples and likelihoods are the local
ones, concurrent clients are merged into shared loops without mixing, and bad requests get clear errors."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import pixelrt
from pixelrt.errors import PixelrtError
from tests.serving.conftest import CLASSES, IMAGE, MODEL, STREAMED

# Merged with other requests, a row's log-probs may differ from the local loop's in the last float bits (ORT's
# CPU ReduceSum sums a row in an order that depends on its place in the batch; docs/serving.md). Measured: at
# most ~2e-6 nats per sub-pixel; images are identical.
MERGED_LOGP_BUDGET = 1e-5


def _same(got, want) -> None:
    assert np.array_equal(got.images, want.images)
    assert np.array_equal(got.logp, want.logp)
    assert np.array_equal(got.loglik, want.loglik)


def test_sampling_through_the_server_is_the_local_sample(triton, served_bundle):
    server, _ = triton
    labels = [0, 1, 2, 3, 4, 9]
    want = pixelrt.sample(served_bundle, 6, seed=11, label=labels)
    for url in (server.http_url, server.grpc_url):
        with pixelrt.connect(url, MODEL) as client:
            got = client.sample(6, seed=11, label=labels)
        _same(got, want)
        assert np.array_equal(got.extra["label"], labels)
        assert np.array_equal(got.bits_per_dim, want.bits_per_dim)


def test_cli_sample_url_writes_what_local_sampling_writes(triton, served_bundle, tmp_path):
    from pixelrt.cli import main

    server, _ = triton
    assert main(["sample", "--url", server.grpc_url, "--model", MODEL, "-n", "4", "--seed", "5", "--label", "3",
                 "-o", str(tmp_path / "remote.png"), "--npz", str(tmp_path / "remote.npz")]) == 0
    assert main(["sample", str(served_bundle.root), "-n", "4", "--seed", "5", "--label", "3", "--no-progress",
                 "-o", str(tmp_path / "local.png"), "--npz", str(tmp_path / "local.npz")]) == 0
    remote, local = np.load(tmp_path / "remote.npz"), np.load(tmp_path / "local.npz")
    for key in ("images", "logp"):
        assert np.array_equal(remote[key], local[key])
    assert (tmp_path / "remote.png").read_bytes() == (tmp_path / "local.png").read_bytes()


def test_likelihoods_through_the_server_equal_local_eval(triton, served_bundle):
    from pixelrt.data import load_dataset, split

    server, _ = triton
    _, test = split(load_dataset("digits"))
    labels = test.labels % CLASSES  # digits' labels are 0..9: the bundle's classes
    want = pixelrt.evaluate(served_bundle, test.x, label=labels)
    with pixelrt.connect(server.http_url, MODEL) as client:
        got = client.evaluate(test.x, label=labels)
    assert len(got) == len(test.x) > 256  # more than one request of max_batch_size 256, chunked as eval does
    assert np.array_equal(got.nats, want.nats)
    assert np.array_equal(got.logp, want.logp)
    assert got.mean_bits_per_dim == want.mean_bits_per_dim


def test_32_concurrent_clients_each_get_their_own_images_in_shared_loops(triton, served_bundle):
    server, repo = triton
    seeds = list(range(100, 132))
    with pixelrt.connect(server.grpc_url, MODEL) as stats:
        before = stats.statistics()
        start = threading.Barrier(len(seeds))

        def ask(seed):  # an HTTP client (gevent) lives in the thread that made it: one client per thread
            with pixelrt.connect(server.http_url if seed % 2 else server.grpc_url, MODEL) as client:
                start.wait(timeout=60)
                return client.sample(2, seed=seed, label=seed % CLASSES)

        with ThreadPoolExecutor(len(seeds)) as pool:
            results = list(pool.map(ask, seeds))
        after = stats.statistics()
    for seed, got in zip(seeds, results):  # none lost, none mixed up: each is its own seed's local sample
        want = pixelrt.sample(served_bundle, 2, seed=seed, label=seed % CLASSES)
        assert np.array_equal(got.images, want.images), seed
        assert np.abs(got.logp - want.logp).max() <= MERGED_LOGP_BUDGET, seed
        assert np.array_equal(got.extra["label"], [seed % CLASSES] * 2)
    assert after["inferences"] - before["inferences"] == 2 * len(seeds)
    executions = after["executions"] - before["executions"]
    assert executions < len(seeds)  # requests were merged into shared step loops
    merged = {b: after["batches"][b] - before["batches"].get(b, 0) for b in after["batches"]}
    assert max(b for b, count in merged.items() if count) > 2  # some loop ran more than one request's images


def _raw(server):
    import tritonclient.http as http

    return http, http.InferenceServerClient(server.http_url.split("://")[1])


def _send(http, client, model, **inputs):
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype

    tensors = []
    for name, value in inputs.items():
        t = http.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
        t.set_data_from_numpy(value)
        tensors.append(t)
    try:
        client.infer(model, tensors)
    except InferenceServerException as e:
        return e.message()
    return None


@pytest.mark.parametrize("case, inputs, message", [
    ("oversized n", dict(seed=np.zeros((65, 1), np.int64), label=np.zeros((65, 1), np.int64)), "batch-size must be <= 64"),
    ("unknown label", dict(seed=np.zeros((2, 1), np.int64), label=np.array([[3], [CLASSES]], np.int64)),
     f"labels must lie in 0..{CLASSES - 1}"),
    ("mixed seeds", dict(seed=np.array([[1], [2]], np.int64), label=np.zeros((2, 1), np.int64)),
     "one value repeated in every row"),
    ("negative seed", dict(seed=np.full((1, 1), -4, np.int64), label=np.zeros((1, 1), np.int64)), "non-negative"),
    ("no label", dict(seed=np.zeros((1, 1), np.int64)), "label"),
])
def test_bad_sampling_requests_get_an_error_and_the_server_goes_on(triton, served_bundle, case, inputs, message):
    server, repo = triton
    http, client = _raw(server)
    error = _send(http, client, repo.sample_model, **inputs)
    assert error is not None and message in error, (case, error)
    with pixelrt.connect(server.http_url, MODEL) as c:  # the next request is served, and right
        _same(c.sample(3, seed=2, label=7), pixelrt.sample(served_bundle, 3, seed=2, label=7))


@pytest.mark.parametrize("case, x, message", [
    ("wrong shape", np.zeros((2, 1, 8, 7), np.uint8), "unexpected shape for input 'x'"),
    ("pixels out of range", np.full((2, *IMAGE.shape), IMAGE.levels, np.uint8), "17"),
    ("NaN", np.full((2, *IMAGE.shape), np.nan, np.float32), "FP32"),
])
def test_bad_likelihood_requests_get_an_error_and_the_server_goes_on(triton, served_bundle, case, x, message):
    server, repo = triton
    http, client = _raw(server)
    error = _send(http, client, repo.loglik_model, x=x, label=np.zeros((2, 1), np.int64))
    assert error is not None and message in error, (case, error)
    good = np.zeros((2, *IMAGE.shape), np.uint8)
    with pixelrt.connect(server.http_url, MODEL) as c:
        assert np.array_equal(c.evaluate(good, label=1).nats, pixelrt.evaluate(served_bundle, good, label=1).nats)


def test_the_client_refuses_what_the_server_would_refuse_before_sending(triton):
    server, _ = triton
    with pixelrt.connect(server.http_url, MODEL) as c:
        with pytest.raises(PixelrtError, match="max_batch_size 64"):
            c.sample(65, seed=0, label=1)
        with pytest.raises(PixelrtError, match="conditional: pass label"):
            c.sample(2, seed=0)
    with pytest.raises(PixelrtError, match="serves 2 pixelrt models"):
        pixelrt.connect(server.http_url)  # which one is ambiguous: the client asks for --model
    with pytest.raises(PixelrtError, match="no Triton server at"):
        pixelrt.connect(f"http://127.0.0.1:{_closed_port()}")


def _closed_port() -> int:
    from pixelrt.serving.server import free_port

    return free_port()


def test_a_decoupled_model_streams_each_finished_row_then_the_local_images(triton, served_bundle):
    server, _ = triton
    rows = []
    with pixelrt.connect(server.grpc_url, STREAMED) as client:
        got = client.sample(3, seed=8, label=[1, 2, 3], on_row=lambda i, v, lp: rows.append((i, v, lp)))
        with pytest.raises(PixelrtError, match="connect with grpc"):
            pixelrt.connect(server.http_url, STREAMED).sample(1, seed=0, label=1)
    _same(got, pixelrt.sample(served_bundle, 3, seed=8, label=[1, 2, 3]))
    assert [i for i, _, _ in rows] == list(range(IMAGE.height))  # every row, in order, before the final answer
    for i, values, logp in rows:
        assert np.array_equal(values, got.images[:, :, i]) and np.array_equal(logp, got.logp[:, :, i])
