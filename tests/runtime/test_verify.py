"""`pixelrt verify`: the device-side check passes an exported bundle and catches one whose graphs are not the
model its manifest describes (same shapes, same identity, other weights), with exit 1 and the table."""
import json

from pixelrt.cli import main
from tests.runtime.bundle_edits import copy_bundle, rehash


def test_verify_passes_an_exported_bundle_with_every_row_within_budget(grey_bundle, capsys, tmp_path):
    assert main(["verify", str(grey_bundle[1].root), "--json", str(tmp_path / "v.json")]) == 0
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["ok"] and len(report["rows"]) == 9  # 6 raster-loop rows, 3 wavefront rows
    assert all(r["ok"] for r in report["rows"])
    assert all(r["max"] <= r["budget"] for r in report["rows"] if r["unit"] != "fraction")
    agree = {r["key"]: r for r in report["rows"]}["wave_vs_raster_agreement"]
    assert agree["mean"] == 1.0  # the wavefront loop samples the raster loop's images for the seed


def test_verify_catches_a_wavefront_graph_with_other_weights(grey_bundle, grey_bundle_other_weights, capsys,
                                                             tmp_path):
    root = copy_bundle(grey_bundle[1], tmp_path)
    (root / "wave.onnx").write_bytes((grey_bundle_other_weights[1].root / "wave.onnx").read_bytes())
    rehash(root, "wave.onnx")
    assert main(["verify", str(root), "--json", str(tmp_path / "v.json")]) == 1
    rows = {r["key"]: r for r in json.loads((tmp_path / "v.json").read_text())["rows"]}
    assert rows["step_vs_full_max_dbpd"]["ok"] and rows["sampled_vs_full_max_dbpd"]["ok"]  # the raster loop is fine
    assert not rows["wave_vs_full_max_dlogp"]["ok"] and not rows["wave_sampled_vs_full_max_dbpd"]["ok"]


def test_verify_catches_swapped_weights_with_exit_1(grey_bundle, grey_bundle_other_weights, capsys, tmp_path):
    root = copy_bundle(grey_bundle[1], tmp_path)
    step = grey_bundle_other_weights[1].root / "step.onnx"
    (root / "step.onnx").write_bytes(step.read_bytes())  # only the step graph: the full graph still matches
    rehash(root, "step.onnx")
    assert main(["verify", str(root), "--json", str(tmp_path / "v.json")]) == 1
    out, err = capsys.readouterr()
    rows = {r["key"]: r for r in json.loads((tmp_path / "v.json").read_text())["rows"]}
    assert rows["full_vs_export_max_dbpd"]["ok"]  # the full graph is the exported one
    assert not rows["step_vs_export_max_dbpd"]["ok"] and not rows["step_vs_full_max_dbpd"]["ok"]
    assert "MISS" in out and "parity missed its budget" in err
