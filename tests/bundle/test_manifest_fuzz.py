"""Property-based pass over hostile manifests (hypothesis): random mutations of random fields of a real
bundle's manifest, and of a composite bundle's part manifest with the top sum recomputed.

The property: loading and checking the bundle either succeeds or raises ``PixelrtError``, never any other
exception, and opens nothing outside the bundle. Derandomised, so CI runs the same examples every time.
"""
from __future__ import annotations

import copy
import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixelrt.bundle import MANIFEST, load_bundle
from pixelrt.errors import PixelrtError
from tests.bundle.hostile import OpenAudit, all_leaves, delete_at, opened_under, rehash, set_at

VALUES = [None, True, False, 0, 1, -1, 2, 7, 255, 256, 2 ** 31, 2 ** 63, -(2 ** 63), 10 ** 30, 0.5, -0.0, 1e308,
          -1e308, "", "batch", "float32", "ring-row", "row", "x" * 5000, "../step.onnx", "/etc/passwd",
          "step.onnx", [], [1], ["batch", 1, 5, 6], {}, {"kind": "row"}, [[[[[]]]]]]
RAW = ["NaN", "Infinity", "-Infinity", "1e400", "[" * 64 + "]" * 64, '"\\ud800"']
COUNTS = {"examples": 0, "refused": 0, "loaded": 0}


def _mutate(doc, data):
    leaves = [p for p, _ in all_leaves(doc) if p]
    path = data.draw(st.sampled_from(leaves), label="path")
    op = data.draw(st.sampled_from(["set", "delete", "extra", "raw", "duplicate"]), label="op")
    raw = None
    if op == "set":
        set_at(doc, path, copy.deepcopy(data.draw(st.sampled_from(VALUES), label="value")))
    elif op == "delete":
        delete_at(doc, path)
    elif op == "extra":
        node = doc
        for p in path[:-1]:
            node = node[p]
        if isinstance(node, dict):
            node["zz_extra"] = 1
        else:
            node.append(copy.deepcopy(node[-1]) if node else 1)
    elif op == "duplicate":
        node = doc
        for p in path[:-1]:
            node = node[p]
        if isinstance(node, list) and node:
            node.insert(0, copy.deepcopy(node[0]))
        else:
            set_at(doc, path, [copy.deepcopy(node[path[-1]])] * 2)
    else:  # a raw token JSON parsers disagree on, in place of the value
        set_at(doc, path, "@@RAW@@")
        raw = data.draw(st.sampled_from(RAW), label="raw")
    text = json.dumps(doc)
    return text.replace('"@@RAW@@"', raw) if raw else text


def _load_and_check(root, outside) -> None:
    from pixelrt.runtime.graph_check import check_bundle_graphs

    COUNTS["examples"] += 1
    with OpenAudit() as opened:
        try:
            check_bundle_graphs(load_bundle(root))
            COUNTS["loaded"] += 1
        except PixelrtError:
            COUNTS["refused"] += 1
    assert opened_under(opened, outside) == []


@pytest.fixture(scope="module")
def grey_copy(grey_bundle, tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    root = base / "b"
    shutil.copytree(grey_bundle[1].root, root)
    (base / "outside").mkdir()
    return root, base / "outside", json.loads((root / MANIFEST).read_text())


@pytest.fixture(scope="module")
def ms_copy(multiscale_bundle, tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz-ms")
    root = base / "b"
    shutil.copytree(multiscale_bundle[1].root, root)
    (base / "outside").mkdir()
    return root, base / "outside", (root / MANIFEST).read_text(), json.loads((root / "stage2" / MANIFEST).read_text())


@settings(max_examples=500, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_manifest_is_loaded_or_refused_cleanly(grey_copy, data):
    root, outside, original = grey_copy
    (root / MANIFEST).write_text(_mutate(copy.deepcopy(original), data))
    _load_and_check(root, outside)


@settings(max_examples=250, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_part_manifest_with_recomputed_top_sum(ms_copy, data):
    root, outside, top_text, part = ms_copy
    (root / MANIFEST).write_text(top_text)
    (root / "stage2" / MANIFEST).write_text(_mutate(copy.deepcopy(part), data))
    rehash(root, f"stage2/{MANIFEST}")
    _load_and_check(root, outside)


def test_the_fuzz_refused_most_mutations():
    """The passes above ran (pytest runs this module's tests in order) and the mutations mostly mattered:
    a fuzzer whose every example loaded would be testing nothing."""
    if COUNTS["examples"] < 750:
        pytest.skip("run with the two property tests (this checks their counts)")
    assert COUNTS["refused"] >= 0.6 * COUNTS["examples"], COUNTS
    print(f"\nmanifest fuzz: {COUNTS}")
