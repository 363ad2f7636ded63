"""Merging requests into one step loop, in process (no server): each request gets its own seed's images."""
from __future__ import annotations

import numpy as np
import pytest

import pixelrt
from pixelrt.errors import PixelrtError
from pixelrt.runtime.backends import step_backends
from pixelrt.serving.batching import SampleRequest, parse_request, sample_merged

SIZES, SEEDS = (1, 3, 5, 2, 7), (40, 41, 42, 43, 44)


def _requests(bundle):
    return [SampleRequest(s, n, {"label": np.full(n, s % 10, np.int64)}) for s, n in zip(SEEDS, SIZES)]


@pytest.mark.parametrize("merge", [True, False])
def test_each_request_gets_its_own_seeds_images(served_bundle, merge):
    with step_backends("ort", served_bundle) as (step, row):
        replies = sample_merged(served_bundle, step, row, _requests(served_bundle), merge=merge)
    assert [len(r.images) for r in replies] == list(SIZES)
    for seed, n, got in zip(SEEDS, SIZES, replies):
        want = pixelrt.sample(served_bundle, n, seed=seed, label=seed % 10)
        assert np.array_equal(got.images, want.images)
        if merge:  # the last float bits of ORT's ReduceSum depend on a row's place in the batch (docs/serving.md)
            assert np.abs(got.logp - want.logp).max() <= 1e-5
        else:      # one loop per request: the local loop exactly
            assert np.array_equal(got.logp, want.logp) and np.array_equal(got.loglik, want.loglik)


def test_a_request_is_checked_on_its_own(served_bundle):
    ok = parse_request(served_bundle, np.full((3, 1), 9, np.int64), {"label": np.array([[1], [2], [3]])})
    assert (ok.seed, ok.n, ok.context["label"].tolist()) == (9, 3, [1, 2, 3])
    for seed, label, why in [(np.array([[1], [2]]), np.zeros((2, 1)), "repeated in every row"),
                             (np.full((2, 1), -1), np.zeros((2, 1), np.int64), "non-negative"),
                             (np.full((2, 1), 1.5), np.zeros((2, 1), np.int64), "integer tensor"),
                             (np.full((2, 1), 1), np.array([[0], [10]]), "0..9")]:
        with pytest.raises(PixelrtError, match=why):
            parse_request(served_bundle, seed, {"label": label})
