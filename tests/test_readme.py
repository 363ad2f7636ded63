"""README.md's "The command line" block runs as written, in order, from an empty folder: every line goes
through `pixelrt.cli.main` with tiny settings appended (argparse keeps the last value of a repeated
option), exits 0 and writes what it names. Only the benchmark lines are skipped, by name (SKIPPED)."""
import contextlib
import io
import os
import re
import shlex
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"
SKIPPED = {"bench": "times the 28x28 ref28 and 3x32x32 pp32 benchmark models (minutes on 2 cores); "
                    "`pixelrt bench` is covered by tests/bench/"}
PROGRESS = ["--no-progress"]
TRAIN = {"pixelcnn": ["--epochs", "1", "--set", "hidden=8", "--set", "blocks=1", "--set", "head_hidden=8"],
         "gated": ["--epochs", "1", "--set", "hidden=8", "--set", "layers=2", "--set", "head_hidden=8"]}
PARITY = ["-n", "8", "--samples", "2", "--teacher", "1"]
CALIBRATE = ["--calib-images", "16", "--heldout", "16", "--step-images", "2", "--step-feeds", "16"]
GRID_LABEL_ROWS, GRID_COLUMNS = 10, 10  # `sample bundles/g --label 0-9 -n 100`: one row of 10 per label


def readme_lines() -> list[list[str]]:
    """The `pixelrt ...` lines of the block under "## The command line", comments dropped, as argv lists."""
    section = README.read_text().split("## The command line", 1)[1]
    block = re.search(r"```\n(.*?)```", section, flags=re.S).group(1)
    return [shlex.split(line.split("#", 1)[0])[1:] for line in block.splitlines() if line.startswith("pixelrt ")]


def tiny(argv: list[str]) -> list[str]:
    command = argv[0]
    if command == "train":
        model = argv[argv.index("--model") + 1] if "--model" in argv else "pixelcnn"
        return TRAIN[model] + PROGRESS
    if command == "export":
        return ["--reference", "4"]
    if command == "sample":
        return PROGRESS
    if command == "parity":
        return [] if "--receptive-field" in argv else PARITY + PROGRESS
    if command == "calibrate":
        return CALIBRATE + PROGRESS
    return []


def written(argv: list[str]) -> list[str]:
    """The paths a line says it writes: its -o, --png and --json arguments."""
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-o", "--out", "--png", "--json")]


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """Every README line in order in one empty folder: (argv, exit code, stdout, stderr, seconds) each."""
    from pixelrt.cli import main

    folder = tmp_path_factory.mktemp("readme")
    results, cwd = [], os.getcwd()
    os.chdir(folder)
    try:
        for argv in readme_lines():
            if argv[0] in SKIPPED:
                results.append((argv, None, "", "", 0.0))
                continue
            out, err = io.StringIO(), io.StringIO()
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main(argv + tiny(argv))
                except SystemExit as e:  # argparse refused the line
                    code = e.code
            results.append((argv, code, out.getvalue(), err.getvalue(), time.perf_counter() - t0))
            if code != 0:
                break  # later lines need this one's output
    finally:
        os.chdir(cwd)
    return folder, results


def test_the_block_is_the_sequence_this_test_knows():
    commands = [argv[0] for argv in readme_lines()]
    assert commands == ["train", "export", "info", "verify", "sample", "eval", "parity", "parity", "bench", "calibrate",
                        "parity", "bench", "train", "export", "sample"]


def test_every_line_but_the_benches_runs_in_order_and_writes_what_it_names(ran):
    folder, results = ran
    assert len(results) == len(readme_lines())  # none stopped the sequence
    for argv, code, out, err, _ in results:
        if argv[0] in SKIPPED:
            continue
        assert code == 0, f"`pixelrt {shlex.join(argv)}` exited {code}:\n{out[-2000:]}\n{err[-2000:]}"
        for path in written(argv):
            assert (folder / path).exists(), f"`pixelrt {shlex.join(argv)}` did not write {path}"
    assert [a[0] for a, code, *_ in results if code is None] == ["bench", "bench"]


def test_what_the_lines_print_and_draw(ran):
    folder, results = ran
    outputs = {shlex.join(argv): out for argv, _, out, _, _ in results}
    assert "checksums verified" in outputs["info bundles/pixelcnn"]
    assert "bits/dim" in outputs["eval bundles/pixelcnn --data digits"]
    assert "coverage of the causal past" in outputs["parity runs/pixelcnn --receptive-field --png field.png"]
    for run in ("runs/pixelcnn", "runs/g"):  # every checkpoint holds its training curve
        assert Image.open(folder / run / "training.png").size == (640, 400)
    assert (folder / "bundles/pixelcnn-int8/manifest.json").is_file()
    field = np.asarray(Image.open(folder / "field.png").convert("RGB"))
    assert (field == (214, 39, 40)).all(-1).any()  # the output pixel's cell (pixelrt.plots.CELLS)


def test_label_grid_has_one_labelled_row_per_label(ran):
    folder, _ = ran
    grid = np.asarray(Image.open(folder / "g.png").convert("L"))
    cell, pad = 64 + 2, 2  # 8x8 digits shown 8x, 2 px apart (runtime/grid.py)
    assert grid.shape[0] == GRID_LABEL_ROWS * cell + pad
    margin = grid.shape[1] - (GRID_COLUMNS * cell + pad)
    assert margin > 20  # the row labels' column
    for r in range(GRID_LABEL_ROWS):
        band = grid[pad + r * cell: pad + r * cell + 64, :margin]
        assert (band < 80).sum() > 20, f"row {r} has no label text"

