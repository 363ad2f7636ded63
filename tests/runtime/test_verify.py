"""`pixelrt verify`: the device-side check passes an exported bundle and catches one whose graphs are not the
model its manifest describes (same shapes, same identity, other weights), with exit 1 and the table."""
import json

from pixelrt.cli import main
from tests.runtime.bundle_edits import copy_bundle, rehash


def test_verify_passes_an_exported_bundle_with_every_row_within_budget(grey_bundle, capsys, tmp_path):
    assert main(["verify", str(grey_bundle[1].root), "--json", str(tmp_path / "v.json")]) == 0
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["ok"] and len(report["rows"]) == 6
    assert all(r["max"] <= r["budget"] for r in report["rows"])


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
