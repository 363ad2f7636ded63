"""A family added as one model file and one registration line (models/resgated.py) runs through every
command unchanged: train, export, sample, eval and parity."""
import json

import numpy as np
import pytest

from pixelrt.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("resgated")
    rng = np.random.default_rng(0)
    np.savez(work / "tiny.npz", x=rng.integers(0, 4, (40, 1, 5, 5)).astype(np.uint8))
    assert main(["train", "--model", "resgated", "--data", str(work / "tiny.npz"), "--set", "hidden=4",
                 "--set", "blocks=1", "--set", "input_kernel=3", "--epochs", "1", "-o", str(work / "ck"),
                 "--no-progress"]) == 0
    assert main(["export", str(work / "ck"), "-o", str(work / "b"), "--reference", "3"]) == 0
    return work


def test_the_new_family_trains_exports_samples_evaluates_and_passes_parity(run, capsys):
    assert main(["sample", str(run / "b"), "-n", "3", "-o", str(run / "s.png"), "--no-progress"]) == 0
    assert main(["eval", str(run / "b"), "--data", str(run / "tiny.npz")]) == 0
    assert main(["parity", str(run / "ck"), "--bundle", str(run / "b"), "--data", str(run / "tiny.npz"),
                 "-n", "4", "--samples", "2", "--teacher", "2", "--json", str(run / "p.json"), "--no-progress"]) == 0
    report = json.loads((run / "p.json").read_text())
    assert report["ok"] and all(r["ok"] for r in report["rows"])
    manifest = json.loads((run / "b" / "manifest.json").read_text())
    assert manifest["family"] == "resgated" and manifest["kind"] == "autoregressive"
    assert manifest["validation"]["step_vs_full_max_dlogp"] <= 1e-4
