"""A bundle is untrusted input: hostile bundles and checkpoints, one class of attack per test.

Each case copies a real exported bundle, damages the copy as an attacker or a tired user would, and
runs everything a user runs on it (``hostile.use``: load, check every graph, evaluate the reference
batch, sample). Each must end in exactly one ``PixelrtError`` whose message names the field or the
file, with nothing opened outside the bundle (Python's audit hook, event ``open``) and nothing in
the bundle written.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from pixelrt.bundle import MANIFEST
from pixelrt.errors import BundleError, CheckpointError, ParityError, PixelrtError
from tests.bundle.hostile import (OpenAudit, copy_bundle, digests, opened_under, read_json, rehash, use,
                                  write_json)

def hostile(root: Path, outside: Path, match: str, error: type = PixelrtError) -> None:
    """``use(root)`` raises ``error`` matching ``match``; nothing outside ``root`` under ``outside`` is opened;
    the bundle's files are unchanged."""
    before = digests(root)
    with OpenAudit() as opened:
        with pytest.raises(error, match=match) as info:
            use(root)
    assert isinstance(info.value, PixelrtError)
    assert opened_under(opened, outside) == [], "opened a file outside the bundle"
    assert digests(root) == before, "the hostile bundle was written to"


@pytest.fixture
def place(tmp_path):
    """(tmp, the empty 'outside' folder tmp/outside): tests put their decoys there and copy the bundle to tmp/b."""
    outside = tmp_path / "outside"
    outside.mkdir()
    return tmp_path, outside


def _grey(grey_bundle, tmp_path) -> Path:
    return copy_bundle(grey_bundle[1].root, tmp_path / "b")


# ------------------------------------------------------------------ traversal and absolute paths

@pytest.mark.parametrize("name", ["../outside/full.onnx", "/abs/full.onnx", "sub/../../outside/full.onnx",
                                  "..\\outside\\full.onnx", ""])
def test_graph_file_outside_the_bundle(grey_bundle, place, name):
    tmp, outside = place
    root = _grey(grey_bundle, tmp)
    (outside / "full.onnx").write_bytes((root / "full.onnx").read_bytes())
    m = read_json(root / MANIFEST)
    m["files"][name] = m["files"].pop("full.onnx")
    m["graphs"]["full"]["file"] = name
    write_json(root / MANIFEST, m)
    hostile(root, outside, r"files|file")


@pytest.mark.parametrize("kind,part,bad", [("multiscale", "stage1", "../outside"), ("multiscale", "stage2", "/tmp"),
                                           ("pixelvae", "pixelcnn", ".."), ("pixelvae", "pixelcnn", "a/b")])
def test_part_directory_outside_the_bundle(multiscale_bundle, pixelvae_bundle, place, kind, part, bad):
    tmp, outside = place
    src = multiscale_bundle[1] if kind == "multiscale" else pixelvae_bundle[1]
    root = copy_bundle(src.root, tmp / "b")
    m = read_json(root / MANIFEST)
    m["parts"][part]["dir"] = bad
    write_json(root / MANIFEST, m)
    hostile(root, outside, rf"parts\.{part}\.dir must match")


def test_part_file_listed_only_by_the_part(pixelvae_bundle, place):
    """A graph named only in a sub-bundle's manifest is refused: the top manifest must list it with its sha256."""
    tmp, outside = place
    root = copy_bundle(pixelvae_bundle[1].root, tmp / "b")
    sub = read_json(root / "pixelcnn" / MANIFEST)
    (root / "pixelcnn" / "other.onnx").write_bytes((root / "pixelcnn" / "step.onnx").read_bytes())
    sub["files"]["other.onnx"] = dict(sub["files"]["step.onnx"])
    sub["graphs"]["step"]["file"] = "other.onnx"
    write_json(root / "pixelcnn" / MANIFEST, sub)
    rehash(root, f"pixelcnn/{MANIFEST}")
    hostile(root, outside, r"pixelcnn/other\.onnx is listed by the part's manifest but not, with the same sha256")


def test_part_graph_changed_with_its_own_sums_recomputed(multiscale_bundle, place):
    tmp, outside = place
    root = copy_bundle(multiscale_bundle[1].root, tmp / "b")
    f = root / "stage2" / "step.onnx"
    f.write_bytes(f.read_bytes() + b"\0")
    sub = read_json(root / "stage2" / MANIFEST)
    from pixelrt.bundle import sha256_file

    sub["files"]["step.onnx"].update(sha256=sha256_file(f), bytes=f.stat().st_size)
    write_json(root / "stage2" / MANIFEST, sub)
    hostile(root, outside, r"stage2/manifest\.json: sha256 mismatch")  # the part's manifest is listed by the top
    rehash(root, f"stage2/{MANIFEST}")  # ...and the forger recomputes that sum too: the top's sum of the graph holds
    hostile(root, outside, r"stage2/step\.onnx: sha256 mismatch")


# ------------------------------------------------------------------ symlinks

@pytest.mark.parametrize("target", ["full.onnx", "reference.npz", MANIFEST])
def test_symlink_to_a_file_outside(grey_bundle, place, target):
    """Even with the very same bytes (so the checksum passes), a file behind a link out of the bundle is refused."""
    tmp, outside = place
    root = _grey(grey_bundle, tmp)
    decoy = outside / target
    decoy.write_bytes((root / target).read_bytes())
    (root / target).unlink()
    os.symlink(decoy, root / target)
    hostile(root, outside, r"symlink to .*outside the bundle")


def test_symlinked_folder_out_of_the_bundle(multiscale_bundle, place):
    tmp, outside = place
    root = copy_bundle(multiscale_bundle[1].root, tmp / "b")
    os.rename(root / "stage1", outside / "stage1")
    os.symlink(outside / "stage1", root / "stage1")
    hostile(root, outside, r"symlink to .*outside the bundle")


def test_symlink_inside_the_bundle_is_followed_and_verified(grey_bundle, tmp_path):
    """A link that stays inside is no escape: it loads when its target has the listed bytes, not otherwise."""
    root = _grey(grey_bundle, tmp_path)
    (root / "copy.onnx").write_bytes((root / "full.onnx").read_bytes())
    (root / "full.onnx").unlink()
    os.symlink("copy.onnx", root / "full.onnx")
    use(root)
    (root / "full.onnx").unlink()
    os.symlink("step.onnx", root / "full.onnx")
    with pytest.raises(BundleError, match=r"full\.onnx: sha256 mismatch"):
        use(root)


@pytest.mark.parametrize("what", ["directory", "fifo"])
def test_listed_file_that_is_not_a_regular_file(grey_bundle, place, what):
    tmp, outside = place
    root = _grey(grey_bundle, tmp)
    (root / "reference.npz").unlink()
    (root / "reference.npz").mkdir() if what == "directory" else os.mkfifo(root / "reference.npz")
    hostile(root, outside, r"reference\.npz is not a regular file")


def test_calibrate_never_copies_an_outside_file(grey_bundle, place):
    from pixelrt.calibration.calibrate import calibrate_bundle

    tmp, outside = place
    root = _grey(grey_bundle, tmp)
    secret = outside / "reference.npz"
    secret.write_bytes((root / "reference.npz").read_bytes())
    (root / "reference.npz").unlink()
    os.symlink(secret, root / "reference.npz")
    x = np.random.default_rng(0).integers(0, 7, (4, 1, 5, 6)).astype(np.uint8)
    with OpenAudit() as opened, pytest.raises(BundleError, match="outside the bundle"):
        calibrate_bundle(root, tmp / "out", "fp16", x, log=lambda m: None)
    assert opened_under(opened, outside) == [] and not (tmp / "out").exists()


# ------------------------------------------------------------------ unlisted files and external data

def test_onnx_external_data_is_never_read(grey_bundle, place):
    """A graph whose weights moved to an external-data file inside the bundle, checksums recomputed: the file
    is neither listed nor read (ORT is told to look for external data where nothing can exist)."""
    import onnx

    tmp, outside = place
    root = _grey(grey_bundle, tmp)
    model = onnx.load(str(root / "full.onnx"))
    onnx.save(model, str(root / "full.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    (outside / "weights.bin").write_bytes((root / "weights.bin").read_bytes())
    rehash(root, "full.onnx")
    cwd = os.getcwd()
    os.chdir(outside)  # ORT's default for a graph read from bytes: the current directory
    try:
        hostile(root, outside, r"full\.onnx: ONNX Runtime cannot load this graph .*external data is not read")
    finally:
        os.chdir(cwd)


# ------------------------------------------------------------------ swapped graphs, checksums recomputed

def test_graph_of_another_image_shape(grey_bundle, rgb_bundle, place):
    tmp, outside = place
    root = _grey(grey_bundle, tmp)
    (root / "full.onnx").write_bytes((rgb_bundle[1].root / "full.onnx").read_bytes())
    rehash(root, "full.onnx")
    hostile(root, outside, r"full\.onnx: the graph does not match .*exported for another bundle: image '3x4x5' "
                           r"\(the manifest says '1x5x6'\)")


def test_graph_of_another_kind(grey_bundle, vae_grey_bundle, place):
    tmp, outside = place
    root = _grey(grey_bundle, tmp)
    (root / "step.onnx").write_bytes((vae_grey_bundle[1].root / "decoder.onnx").read_bytes())
    rehash(root, "step.onnx")
    hostile(root, outside, r"step\.onnx: the graph does not match .*kind 'vae' \(the manifest says 'autoregressive'\)")


def test_graph_without_pixelrt_identity(grey_bundle, place):
    import onnx

    tmp, outside = place
    root = _grey(grey_bundle, tmp)
    model = onnx.load(str(root / "step.onnx"))
    del model.metadata_props[:]
    onnx.save(model, str(root / "step.onnx"))
    rehash(root, "step.onnx")
    hostile(root, outside, r"step\.onnx: .*carries no pixelrt identity")


def test_levels_rewritten_consistently_in_the_manifest(grey_bundle, place):
    """image.levels and head.levels both say 17 (a consistent lie): the graphs, exported for 7, are refused."""
    tmp, outside = place
    root = _grey(grey_bundle, tmp)
    m = read_json(root / MANIFEST)
    m["image"]["levels"] = m["head"]["levels"] = 17
    write_json(root / MANIFEST, m)
    hostile(root, outside, r"levels '7' \(the manifest says '17'\)")


def test_same_shape_graph_with_other_weights(grey_bundle, grey_bundle_other_weights, place):
    """Identity and shapes agree; the reference batch does not: exit 1 from eval, not a silent number."""
    tmp, outside = place
    root = _grey(grey_bundle, tmp)
    for g in ("full.onnx", "step.onnx"):
        (root / g).write_bytes((grey_bundle_other_weights[1].root / g).read_bytes())
    rehash(root, "full.onnx", "step.onnx")
    hostile(root, outside, r"reference batch .* bits/dim away from what was measured at export", ParityError)


def test_empty_graph(grey_bundle, place):
    tmp, outside = place
    root = _grey(grey_bundle, tmp)
    (root / "step.onnx").write_bytes(b"")
    rehash(root, "step.onnx")
    hostile(root, outside, r"step\.onnx: ONNX Runtime cannot load this graph")


def test_graph_io_declared_differently_in_the_manifest(grey_bundle, place):
    """An input the schedule cannot feed is refused by the manifest check; an output the graph does not give,
    or one of another dtype, by the check of the graph itself."""
    tmp, outside = place
    root = _grey(grey_bundle, tmp)
    m = read_json(root / MANIFEST)
    m["graphs"]["full"]["inputs"].append({"name": "label", "dtype": "int64", "shape": ["batch"]})
    write_json(root / MANIFEST, m)
    hostile(root, outside, r"graphs\.full\.inputs lists 'label', which is neither a loop input, a state nor")
    m["graphs"]["full"]["inputs"].pop()
    m["graphs"]["full"]["outputs"].append({"name": "entropy", "dtype": "float32", "shape": ["batch"]})
    write_json(root / MANIFEST, m)
    hostile(root, outside, r"graphs\.full\.outputs lists \['entropy', 'loglik', 'logp'\], the graph gives "
                           r"\['loglik', 'logp'\]")
    m["graphs"]["full"]["outputs"].pop()
    m["graphs"]["step"]["inputs"][0]["dtype"] = "int32"
    write_json(root / MANIFEST, m)
    hostile(root, outside, r"input 'pixel' is int64 \['batch', 1\] in the graph, int32 \['batch', 1\] in "
                           r"graphs\.step\.inputs")


def test_sampled_values_outside_the_levels_are_refused(grey_bundle):
    """A step graph that returns 253 in a 7-level bundle: the loop stops at the first row."""
    from pixelrt.runtime.sampler import make_noise, step_loop

    b = grey_bundle[1]

    class Rogue:
        def infer(self, feeds, check=True):
            B = len(feeds["noise"])
            out = {"value": np.full(B, 253, np.int64), "logp": np.zeros(B, np.float32)}
            out.update({s.source: np.zeros((B, s.shape[1], s.shape[4]), np.float32) for s in b.state})
            return out

    with pytest.raises(BundleError, match=r"sampled 253\.\.253 in row 0, outside the bundle's 7 levels"):
        step_loop(Rogue(), b.image, b.state, make_noise(2, b.image, 0), schedule=b.step_schedule)


# ------------------------------------------------------------------ malformed JSON

@pytest.mark.parametrize("text,match", [
    ('{"format": "pixelrt-bundle", "a": NaN}', "NaN is not a number JSON allows"),
    ('{"format": "pixelrt-bundle", "a": Infinity}', "Infinity is not a number JSON allows"),
    ('{"format": "pixelrt-bundle", "a": 1e400}', "overflows to infinity"),
    ('{"format": "pixelrt-bundle", "format": "pixelrt-bundle"}', "appears twice"),
    ("[" * 100000 + "]" * 100000, "nested too deeply|nested deeper"),
    ('{"format": "pixelrt-bundle", "a": ' + "[" * 40 + "]" * 40 + "}", "nested deeper than 16 levels"),
    ('{"format": "pixelrt-bundle"', "not valid JSON"),
    (b"\xff\xfe{}", "not valid JSON"),
])
def test_malformed_manifest_json(grey_bundle, place, text, match):
    tmp, outside = place
    root = _grey(grey_bundle, tmp)
    (root / MANIFEST).write_bytes(text if isinstance(text, bytes) else text.encode())
    hostile(root, outside, match)


def test_huge_manifest(grey_bundle, place):
    tmp, outside = place
    root = _grey(grey_bundle, tmp)
    with open(root / MANIFEST, "wb") as f:
        f.truncate(64 << 20)  # sparse: 64 MiB of zeros without using the disk
    hostile(root, outside, r"larger than any bundle manifest")


# ------------------------------------------------------------------ semantic values

@pytest.mark.parametrize("path,value,match", [
    (("image", "height"), 16, r"graphs\.full\.inputs declares 'x' as uint8 \['batch', 1, 5, 6\]"),
    (("image", "levels"), 0, r"image\.levels must be an integer in 2\.\.256, got 0"),
    (("image", "levels"), 1000, r"image\.levels must be an integer in 2\.\.256, got 1000"),
    (("image", "levels"), -5, r"image\.levels must be an integer in 2\.\.256, got -5"),
    (("image", "channels"), "one", r"image\.channels must be an integer in 1\.\.16, got \"one\""),
    (("image", "channels"), True, r"image\.channels must be an integer"),
    (("image", "width"), 10 ** 12, r"image\.width must be an integer in 1\.\.4096"),
    (("image", "width"), -6, r"image\.width must be an integer in 1\.\.4096"),
    (("state", 0, "shape", 1), 10 ** 9, r"state\[0\]\.shape\[1\] must be an integer in 0\.\.16777216"),
    (("state", 0, "shape", 3), 99, r"state\[0\]\.shape axis 3 is 99, but width 6"),
    (("state", 0, "update", "rows"), 0, r"state\[0\]\.update\.rows must be an integer in 1\.\.256"),
    (("state", 0, "update", "pad"), 300, r"state\[0\]\.update\.pad must be an integer in 0\.\.256"),
    (("state", 0, "update", "kind"), "lstm", r"state\[0\]\.update\.kind must be one of"),
    (("state", 0, "dtype"), "object", r"state\[0\]\.dtype must be one of 'float32', 'float16'"),
    (("schedule", "substeps_per_pixel"), 4, r"schedule\.substeps_per_pixel \(4\) must divide the 1 channels"),
    (("schedule", "row_graph"), "row", r"schedule\.row_graph names 'row', which graphs does not have"),
    (("reference", "loglik_nats", 0), "x", r"reference\.loglik_nats\[0\] must be a finite"),
    (("reference", "images"), 10 ** 9, r"reference\.images must be an integer in 1\.\.4096"),
    (("files", "full.onnx", "sha256"), "0" * 63, r"files\.full\.onnx\.sha256 must match"),
    (("files", "full.onnx", "bytes"), -1, r"files\.full\.onnx\.bytes must be an integer in 0\.\."),
    (("files", "full.onnx", "bytes"), 1, r"full\.onnx: sha256 mismatch \(the file is \d+ bytes, the manifest lists 1\)"),
    (("format_version",), 1, r"format_version is 1; this pixelrt reads version 2"),
    (("kind",), "gan", r"kind must be one of"),
    (("head", "levels"), 9, r"head\.levels is 9 but image\.levels is 7"),
    (("graphs", "step"), None, r"graphs\.step must be an object"),
    (("precision",), "int4", r"precision must be one of 'fp32', 'fp16', 'int8'"),
])
def test_manifest_value(grey_bundle, place, path, value, match):
    from tests.bundle.hostile import set_at

    tmp, outside = place
    root = _grey(grey_bundle, tmp)
    m = read_json(root / MANIFEST)
    set_at(m, path, value)
    write_json(root / MANIFEST, m)
    hostile(root, outside, match)


def test_missing_step_graph(grey_bundle, place):
    tmp, outside = place
    root = _grey(grey_bundle, tmp)
    m = read_json(root / MANIFEST)
    del m["graphs"]["step"]
    write_json(root / MANIFEST, m)
    hostile(root, outside, r"graphs\.step is missing \(a autoregressive bundle has graphs full, step\)")


def test_reference_array_not_matching_the_manifest(grey_bundle, place):
    tmp, outside = place
    root = _grey(grey_bundle, tmp)
    np.savez(root / "reference.npz", x=np.full((5, 1, 5, 6), 200, np.uint8), loglik=np.zeros(5))
    rehash(root, "reference.npz")
    hostile(root, outside, r"reference\.npz: its images 'x' are not 5 uint8 images of 1x5x6 below 7 levels")


def test_reference_npz_with_a_pickled_object(grey_bundle, place):
    tmp, outside = place
    root = _grey(grey_bundle, tmp)
    np.savez(root / "reference.npz", x=np.zeros((5, 1, 5, 6), np.uint8), loglik=np.array([{"a": 1}] * 5, dtype=object))
    rehash(root, "reference.npz")
    hostile(root, outside, r"reference\.npz: cannot read reference data .*pickle")


# ------------------------------------------------------------------ checkpoints

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from pixelrt.models.checkpoint import save_checkpoint
    from tests.conftest import tiny_pixelcnn

    path = tmp_path_factory.mktemp("ck") / "ck"
    save_checkpoint(tiny_pixelcnn(1, 7), path, {"image": {"channels": 1, "height": 5, "width": 6, "levels": 7}})
    return path


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink-out"])
def test_checkpoint_weights_outside_the_checkpoint(checkpoint, place, how):
    from pixelrt.models.checkpoint import CONFIG, WEIGHTS, load_checkpoint

    tmp, outside = place
    ck = copy_bundle(checkpoint, tmp / "ck")
    decoy = outside / WEIGHTS
    decoy.write_bytes((ck / WEIGHTS).read_bytes())
    doc = read_json(ck / CONFIG)
    if how == "symlink-out":
        (ck / WEIGHTS).unlink()
        os.symlink(decoy, ck / WEIGHTS)
    else:
        doc["weights"]["file"] = "../outside/" + WEIGHTS if how == "dotdot" else str(decoy)
    write_json(ck / CONFIG, doc)
    with OpenAudit() as opened, pytest.raises(CheckpointError, match=r"outside (it|the checkpoint)"):
        load_checkpoint(ck)
    assert opened_under(opened, outside) == []


def test_export_refuses_non_finite_weights(tmp_path):
    import torch

    from pixelrt.bundle import ImageSpec
    from pixelrt.export import export_bundle
    from tests.conftest import tiny_pixelcnn

    model = tiny_pixelcnn(1, 7)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    x = np.zeros((3, 1, 5, 6), np.uint8)
    with pytest.raises(PixelrtError, match=r"non-finite weights in 1 tensors"):
        export_bundle(model, ImageSpec(1, 5, 6, 7), x, tmp_path / "out", log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_nan_validation_result_is_a_miss():
    from pixelrt.export.validator import validation_record
    from pixelrt.runtime.reference_check import within

    assert not within(float("nan"), 1e-5) and within(0.0, 1e-5)
    from pixelrt.runtime.parity import ParityReport, Row

    nan = Row("full graph bits/dim", float("nan"), float("nan"), float("nan"), 1e-5, "bits/dim", key="full_max_dbpd")
    assert not nan.ok  # a NaN compares false against its budget: a miss, never a pass
    with pytest.raises(ParityError, match=r"non-finite values \(full_max_dbpd\)"):
        validation_record(ParityReport("export", [nan]))


# ------------------------------------------------------------------ every family still loads and runs

@pytest.mark.parametrize("fixture", ["grey_bundle", "rgb_bundle", "vae_grey_bundle", "pixelvae_bundle",
                                     "multiscale_bundle"])
def test_real_bundles_load_and_open_nothing_outside(request, fixture, tmp_path):
    bundle = request.getfixturevalue(fixture)[1]
    root = copy_bundle(bundle.root, tmp_path / "b")
    with OpenAudit() as opened:
        use(root)
    outside = [p for p in opened if p.startswith(os.path.realpath(tmp_path)) and
               os.path.commonpath([p, os.path.realpath(root)]) != os.path.realpath(root)]
    assert outside == []
    assert opened_under(opened, root), "the audit hook saw no open at all: the test would pass vacuously"


# ------------------------------------------------------------------ every field, systematically

OPAQUE = ("config", "validation", "calibration", "source", "notes", "versions")  # recorded, never interpreted


def _sweep_cases(manifest: dict):
    """(case id, path, edit) for every field outside the opaque sections: missing, of a wrong type, or
    given an unknown sibling key."""
    from tests.bundle.hostile import all_leaves

    for path, value in all_leaves(manifest):
        if not path or path[0] in OPAQUE or path[0] in ("format",) or (path[0] == "files" and len(path) > 2 and
                                                                        path[2] not in ("sha256", "bytes")):
            continue
        yield "missing", path, None
        wrong = {str: 7, bool: "yes", int: "seven", float: "x", list: {"a": 1}, dict: [1], type(None): {"a": 1}}
        yield "wrong-type", path, wrong[type(value)]
        if isinstance(value, dict) and not (path[0] == "files" and len(path) == 2):  # a file record's extra keys
            yield "extra-key", path + ("zz_unknown",), 1                           # are its provenance


def test_every_manifest_field_missing_mistyped_or_extra(grey_bundle, multiscale_bundle, tmp_path):
    """Each field of a PixelCNN and a multi-scale manifest, each way wrong: one PixelrtError naming the field's
    section (its path's first key) every time, nothing opened outside, nothing written."""
    from tests.bundle.hostile import delete_at, dotted, set_at

    outside = tmp_path / "outside"
    outside.mkdir()
    counts = {"cases": 0, "refused": 0}
    for src in (grey_bundle[1], multiscale_bundle[1]):
        root = copy_bundle(src.root, tmp_path / src.root.parent.name)
        original, text = read_json(root / MANIFEST), (root / MANIFEST).read_bytes()
        before = digests(root)
        for kind, path, value in _sweep_cases(original):
            m = json.loads(json.dumps(original))
            if kind == "missing":
                node = m
                for p in path[:-1]:
                    node = node[p]
                delete_at(m, path)
            else:
                set_at(m, path, value)
            write_json(root / MANIFEST, m)
            counts["cases"] += 1
            with OpenAudit() as opened:
                try:
                    use(root)
                except PixelrtError as e:
                    counts["refused"] += 1
                    # the message names the field, or the other field of the pair it no longer fits
                    assert str(path[0]) in str(e) or re.search(r"manifest\.json: \w+[.\[ ]", str(e)), \
                        (kind, dotted(path), str(e))
                else:
                    # only optional words may go missing without consequence
                    assert kind == "missing" and path[-1] in ("note", "unit", "decoder", "wavefront"), (kind, dotted(path))
            assert opened_under(opened, outside) == []
        (root / MANIFEST).write_bytes(text)
        assert digests(root) == before  # every other file of the bundle is as exported
    assert counts["cases"] > 400 and counts["refused"] >= counts["cases"] - 20, counts
    print(f"\nmanifest field sweep: {counts}")


# ------------------------------------------------------------------ the command line on hostile bundles

def test_commands_on_hostile_bundles_give_one_line_and_the_right_exit_code(grey_bundle, grey_bundle_other_weights,
                                                                         tmp_path, capsys):
    """info, doctor, sample and eval: exit 2 with one error line for a malformed or foreign bundle, exit 1
    (a parity miss) from eval for same-shape graphs with other weights; no traceback, nothing written."""
    from pixelrt.cli import main

    npz = tmp_path / "x.npz"
    np.savez(npz, x=np.random.default_rng(0).integers(0, 7, (10, 1, 5, 6)).astype(np.uint8), levels=np.array(7))
    bad = _grey(grey_bundle, tmp_path)
    m = read_json(bad / MANIFEST)
    m["state"][0]["update"]["pad"] = 300
    write_json(bad / MANIFEST, m)
    swapped = copy_bundle(grey_bundle[1].root, tmp_path / "swapped")
    for g in ("full.onnx", "step.onnx"):
        (swapped / g).write_bytes((grey_bundle_other_weights[1].root / g).read_bytes())
    rehash(swapped, "full.onnx", "step.onnx")
    before = {p: digests(p) for p in (bad, swapped)}
    for root, code, words in ((bad, 2, r"state\[0\]\.update\.pad must be an integer in 0\.\.256, got 300"),
                              (swapped, 1, r"reference batch .* bits/dim away from what was measured at export")):
        argvs = [["eval", str(root), "--data", str(npz)]]
        if code == 2:
            argvs += [["info", str(root)], ["doctor", str(root)],
                      ["sample", str(root), "-n", "1", "-o", str(tmp_path / "s.png"), "--no-progress"]]
        for argv in argvs:
            assert main(argv) == code, argv
            err = capsys.readouterr().err
            said = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("pixelrt ")]
            assert len(said) == 1 and "Traceback" not in err and re.search(words, said[0]), err
    assert {p: digests(p) for p in (bad, swapped)} == before and not (tmp_path / "s.png").exists()


def test_reference_npz_that_would_expand_beyond_the_bound(grey_bundle, place):
    """A zip bomb as the reference batch: its central directory promises 4 GiB; it is refused before numpy
    inflates anything."""
    import struct

    tmp, outside = place
    root = _grey(grey_bundle, tmp)
    data = bytearray((root / "reference.npz").read_bytes())
    at = data.find(b"PK\x01\x02")  # the first central directory entry: uncompressed size at offset 24
    data[at + 24:at + 28] = struct.pack("<I", 0xFFFFFFF0)
    (root / "reference.npz").write_bytes(bytes(data))
    rehash(root, "reference.npz")
    hostile(root, outside, r"reference\.npz would expand to \d+ bytes, more than a reference batch")
