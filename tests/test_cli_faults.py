"""The command line under bad input and faults: one message, a documented exit code, no traceback, and a
file system that holds the previous output or the whole new one, never a half or nothing.

Each case asserts the exit code, the message and the state of the files afterwards. Faults are injected
where the operating system would raise them (a full disk at write, a permission error at read, a kill at
a rename), because this machine runs as root on one file system.
"""
from __future__ import annotations

import builtins
import re
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pixelrt.atomic as atomic
from pixelrt.cli import main
from pixelrt.faults import INTERNAL, OK, USER

TRAIN = ["--epochs", "1", "--set", "hidden=8", "--set", "blocks=1", "--set", "head_hidden=4", "--no-progress",
         "--test-fraction", "0.25"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    x = np.random.default_rng(0).integers(0, 4, (40, 1, 4, 5)).astype(np.uint8)
    np.savez(d / "tiny.npz", x=x, levels=np.array(4))
    assert main(["train", "--data", str(d / "tiny.npz"), "-o", str(d / "ckpt"), *TRAIN]) == OK
    # export's fault handling does not depend on the wavefront graph: these bundles leave it out (one trace less)
    assert main(["export", str(d / "ckpt"), "-o", str(d / "bundle"), "--reference", "3", "--no-wavefront"]) == OK
    manifest = json.loads((d / "bundle" / "manifest.json").read_text())
    assert not (d / "bundle" / "wave.onnx").exists() and manifest["schedule"]["wavefront"] is None
    assert set(manifest["graphs"]) == {"full", "step"}
    return d


def tree(root: Path) -> dict:
    """Every file under root (or root itself) -> its bytes: the state a fault must not change."""
    if root.is_file():
        return {".": root.read_bytes()}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "Traceback" not in out.out
    return code, out.out, out.err


# -- numbers are validated where they are parsed ----------------------------------------------------------
BAD_NUMBERS = [
    (["sample", "{b}", "--seed", "-1"], r"--seed: -1 is out of range"),
    (["sample", "{b}", "-n", str(10**12)], r"-n/--num: 1000000000000 is out of range"),
    (["sample", "{b}", "-n", "0"], r"-n/--num: 0 is out of range"),
    (["sample", "{b}", "--label", "99999999999999999999"], r"not label-conditional"),
    (["sample", "{b}", "--batch-size", "0"], r"--batch-size: 0 is out of range"),
    (["train", "--data", "{d}/tiny.npz", "-o", "{d}/x", "--batch-size", "0"], r"--batch-size: 0 is out of range"),
    (["train", "--data", "{d}/tiny.npz", "-o", "{d}/x", "--batch-size", "-4"], r"--batch-size: -4 is out of range"),
    (["train", "--data", "{d}/tiny.npz", "-o", "{d}/x", "--lr", "nan"], r"--lr: 'nan' is not a finite number"),
    (["train", "--data", "{d}/tiny.npz", "-o", "{d}/x", "--lr", "-1"], r"--lr: -1 is out of range"),
    (["train", "--data", "{d}/tiny.npz", "-o", "{d}/x", "--epochs", "0"], r"--epochs: 0 is out of range"),
    (["train", "--data", "{d}/tiny.npz", "-o", "{d}/x", "--minutes", "inf"], r"not a finite number"),
    (["train", "--data", "{d}/tiny.npz", "-o", "{d}/x", "--test-fraction", "1.5"], r"--test-fraction: 1.5 is out"),
    (["train", "--data", "{d}/tiny.npz", "-o", "{d}/x", "--set", "hidden=-16"], r"hidden must lie in 1\.\.4096"),
    (["train", "--data", "{d}/tiny.npz", "-o", "{d}/x", "--set", "hidden=abc"], r"takes a whole number for hidden"),
    (["train", "--data", "{d}/tiny.npz", "-o", "{d}/x", "--set", "hidden=1e9"], r"takes a whole number for hidden"),
    (["train", "--data", "{d}/tiny.npz", "-o", "{d}/x", "--set", "blocks=100000"], r"blocks must lie in 1\.\.4096"),
    (["calibrate", "{b}", "--precision", "int8", "-o", "{d}/x", "--step-feeds", "0"], r"--step-feeds: 0 is out"),
    (["interpolate", "{b}", "--steps", "1000000000"], r"--steps: 1000000000 is out of range"),
    (["bench", "--batches", "abc"], r"--batches takes comma-separated integers"),
    (["bench", "--threads", "abc"], r"--threads: 'abc' is not a whole number"),
    (["export", "{d}/ckpt", "-o", "{d}/x", "--reference", "-3"], r"--reference: -3 is out of range"),
    (["parity", "{d}/ckpt", "-n", "-1"], r"-n/--num: -1 is out of range"),
    (["verify", "{b}", "--samples", "0"], r"--samples: 0 is out of range"),
    (["sample", "{b}", "-o", "a\x00b.png"], r"contains a NUL byte"),
]


@pytest.mark.parametrize("argv,message", BAD_NUMBERS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_NUMBERS])
def test_bad_numbers_are_refused_before_any_work(work, capsys, argv, message):
    before = tree(work)
    argv = [a.format(d=work, b=work / "bundle") for a in argv]
    try:
        code, out, err = run(argv, capsys)
    except SystemExit as e:  # argparse: usage + one line, exit 2
        code, err = e.code, capsys.readouterr().err
    assert code == USER
    assert re.search(message, err), err
    assert tree(work) == before  # nothing written, nothing removed


# -- operating-system errors become one line ----------------------------------------------------------------
def _fail_open(monkeypatch, match: str, err: int):
    real = builtins.open

    def fake(file, mode="r", *a, **k):
        if match in str(file):
            raise OSError(err, os.strerror(err), str(file))
        return real(file, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", fake)


def test_unreadable_manifest_is_one_line(work, capsys, monkeypatch):
    _fail_open(monkeypatch, "manifest.json", errno.EACCES)
    code, _, err = run(["info", work / "bundle"], capsys)
    assert code == USER and "manifest.json" in err and "permission" in err.lower()


def test_unreadable_checkpoint_is_one_line(work, capsys, monkeypatch):
    _fail_open(monkeypatch, "checkpoint.json", errno.EACCES)
    code, _, err = run(["export", work / "ckpt", "-o", work / "b2"], capsys)
    assert code == USER and "checkpoint.json" in err and not (work / "b2").exists()


@pytest.mark.parametrize("argv,target", [
    (["sample", "{b}", "-n", "2", "-o", "{d}/full.png"], "full.png"),
    (["sample", "{b}", "-n", "2", "-o", "{d}/ok.png", "--npz", "{d}/full.npz"], "full.npz"),
    (["eval", "{b}", "--data", "{d}/tiny.npz", "--json", "{d}/full.json"], "full.json"),
    (["parity", "{d}/ckpt", "--bundle", "{b}", "-n", "2", "--samples", "1", "--teacher", "1",
      "--json", "{d}/full.json"], "full.json"),
])
def test_full_disk_leaves_no_partial_file(work, capsys, monkeypatch, argv, target):
    (work / target).write_bytes(b"previous")
    real_fsync = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(f".{target}.tmp-"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code, _, err = run([a.format(d=work, b=work / "bundle") for a in argv], capsys)
    assert code == USER and "disk is full" in err
    assert (work / target).read_bytes() == b"previous"  # the old file, whole
    assert leftovers(work) == []


def test_outputs_into_a_missing_folder_are_created(work, capsys, tmp_path):
    out = tmp_path / "new" / "deeper"
    code, _, _ = run(["sample", work / "bundle", "-n", "2", "-o", out / "s.png", "--npz", out / "s.npz",
                      "--json", out / "s.json"], capsys)
    assert code == OK
    assert np.load(out / "s.npz")["images"].shape == (2, 1, 4, 5)
    assert json.loads((out / "s.json").read_text())["images"] == 2
    assert Image.open(out / "s.png").size[0] > 0


@pytest.mark.parametrize("out,message", [
    ("{d}", r"is a folder; give a file path"),
    ("{d}/tiny.npz/x.png", r"tiny\.npz is a file, not a folder"),
    ("/dev/null", r"not a regular file .*never replaces those"),
    ("{b}/manifest.json", r"lies inside the command's input"),
])
def test_sample_refuses_outputs_it_must_not_write(work, capsys, out, message):
    before = tree(work)
    code, _, err = run(["sample", work / "bundle", "-n", "2", "-o", out.format(d=work, b=work / "bundle")], capsys)
    assert code == USER and re.search(message, err), err
    assert tree(work) == before


# -- --force replaces only what pixelrt wrote, never an input ---------------------------------------------
def test_force_never_replaces_the_input_or_a_foreign_folder(work, capsys, tmp_path):
    ckpt = tree(work / "ckpt")
    code, _, err = run(["export", work / "ckpt", "-o", work / "ckpt", "--force"], capsys)
    assert code == USER and "the command's input" in err and tree(work / "ckpt") == ckpt
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"precious")
    for argv in (["export", work / "ckpt", "-o", foreign, "--force"],
                 ["train", "--data", work / "tiny.npz", "-o", foreign, "--force", *TRAIN],
                 ["calibrate", work / "bundle", "--precision", "fp16", "-o", foreign, "--force"]):
        code, _, err = run(argv, capsys)
        assert code == USER and "--force only replaces what pixelrt wrote" in err
        assert tree(foreign) == {"holiday.jpg": b"precious"}
    code, _, err = run(["calibrate", work / "bundle", "--precision", "fp16", "-o", work / "bundle", "--force"], capsys)
    assert code == USER and "the command's input" in err


def test_a_bundle_replaced_with_force_is_a_new_complete_bundle(work, capsys, tmp_path):
    from pixelrt.bundle import load_bundle

    target = tmp_path / "b"
    assert run(["export", work / "ckpt", "-o", target, "--reference", "2", "--no-wavefront"], capsys)[0] == OK
    assert run(["export", work / "ckpt", "-o", target, "--reference", "3", "--force", "--no-wavefront"],
               capsys)[0] == OK
    assert len(load_bundle(target).reference()["x"]) == 3 and leftovers(tmp_path) == []


# -- a kill at any rename: the previous output stays, or the new one is complete ------------------------------
class Killed(BaseException):
    """Stands in for a signal arriving at that instant."""


def _kill_at(monkeypatch, folder: Path, k: int, exchange: bool = True) -> list:
    """Raise Killed at the k-th rename / replace / exchange in ``folder`` (0 = never); returns the calls seen.

    Renames inside a command's own temporary folder cannot touch the previous output (it is not touched until
    the final move), so the renames that count are those of paths directly in the output's folder."""
    calls = []
    real_rename, real_replace = os.rename, os.replace
    real_exchange = atomic._exchange if exchange else (lambda a, b: False)  # False: a file system without it

    def wrap(real, name):
        def f(src, dst, *a, **kw):
            if Path(dst).parent == folder or Path(src).parent == folder:
                calls.append(f"{name} {Path(src).name} -> {Path(dst).name}")
                if len(calls) == k:
                    raise Killed()
            return real(src, dst, *a, **kw)
        return f

    monkeypatch.setattr(os, "rename", wrap(real_rename, "rename"))
    monkeypatch.setattr(os, "replace", wrap(real_replace, "replace"))
    monkeypatch.setattr(atomic, "_exchange", wrap(real_exchange, "exchange"))
    return calls


def _readable(kind: str, path: Path) -> bool:
    from pixelrt.bundle import load_bundle
    from pixelrt.models.checkpoint import load_checkpoint

    if kind == "bundle":
        load_bundle(path)
    elif kind == "checkpoint":
        load_checkpoint(path)
    elif kind == "png":
        Image.open(path).load()
    elif kind == "npz":
        np.load(path)["images"]
    else:
        json.loads(path.read_text())
    return True


KILLED = {
    "train": (["train", "--data", "{d}/tiny.npz", "-o", "{o}", "--force", *TRAIN], "checkpoint", "ckpt"),
    "export": (["export", "{d}/ckpt", "-o", "{o}", "--force", "--reference", "2", "--no-wavefront"], "bundle", "bundle"),
    "train (two renames)": (["train", "--data", "{d}/tiny.npz", "-o", "{o}", "--force", *TRAIN], "checkpoint", "ckpt"),
    "sample png": (["sample", "{d}/bundle", "-n", "2", "-o", "{o}"], "png", "s.png"),
    "sample npz": (["sample", "{d}/bundle", "-n", "2", "-o", "{d}/k.png", "--npz", "{o}"], "npz", "s.npz"),
    "eval json": (["eval", "{d}/bundle", "--data", "{d}/tiny.npz", "--json", "{o}"], "json", "e.json"),
}


@pytest.mark.parametrize("command", list(KILLED))
def test_a_kill_at_each_rename_keeps_old_or_complete_new(work, capsys, monkeypatch, tmp_path, command):
    argv, kind, name = KILLED[command]
    target = tmp_path / name
    fill = lambda: [a.format(d=work, o=target) for a in argv]  # noqa: E731
    if kind in ("checkpoint", "bundle"):
        import shutil

        shutil.copytree(work / name, target)  # the previous output
    else:
        assert run(fill(), capsys)[0] == OK
    previous = tree(target)
    exchange = "two renames" not in command
    calls = _kill_at(monkeypatch, tmp_path, 0, exchange)
    assert run(fill(), capsys)[0] == OK  # count the renames of one run
    monkeypatch.undo()
    assert len(calls) == (1 if exchange else 3), calls  # the one move into place (or a refused exchange + two renames)
    for k in range(1, len(calls) + 1):
        _kill_at(monkeypatch, tmp_path, k, exchange)
        with pytest.raises(Killed):
            main(fill())
        monkeypatch.undo()
        capsys.readouterr()
        atomic.recover(target)  # what the next run does before it writes there
        assert _readable(kind, target), f"kill at rename {k} of {len(calls)} ({calls[k - 1]}) lost the output"
        assert leftovers(tmp_path) == [], f"kill at rename {k}: {leftovers(tmp_path)}"
    assert previous  # the previous output was really there to lose


def test_a_process_killed_between_the_two_renames_is_recovered(tmp_path):
    """SIGKILL-hard (os._exit) after the old version moved away: the next write puts it back."""
    target = tmp_path / "t"
    target.mkdir()
    (target / "checkpoint.json").write_text('{"format": "pixelrt-checkpoint"}')
    code = f"""
import os, pixelrt.atomic as a
a._exchange = lambda x, y: False       # a file system without renameat2
real = os.rename
def rename(src, dst):
    real(src, dst)
    if ".old-" in str(dst):
        os._exit(9)                    # killed right after the first rename
os.rename = rename
with a.atomic_directory({str(target)!r}, overwrite=True) as tmp:
    (tmp / "checkpoint.json").write_text('{{"format": "pixelrt-checkpoint", "new": 1}}')
"""
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    assert not target.exists() and any(".old-" in p.name for p in tmp_path.iterdir())
    atomic.recover(target)
    assert json.loads((target / "checkpoint.json").read_text()) == {"format": "pixelrt-checkpoint"}
    assert leftovers(tmp_path) == []


def test_concurrent_writers_of_one_file_never_leave_a_mix(tmp_path):
    import threading

    target = tmp_path / "grid.png"
    payloads = [bytes([i]) * 200_000 for i in range(8)]
    threads = [threading.Thread(target=lambda p=p: [atomic.atomic_write_bytes(target, p) for _ in range(5)])
               for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_bytes() in payloads and leftovers(tmp_path) == []


def test_scratch_folders_of_dead_processes_are_swept(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{atomic.SCRATCH}{int(dead.stdout)}-calib-x"
    stale.mkdir()
    with atomic.scratch_directory("calib") as mine:
        assert atomic.sweep_scratch() == 1 and mine.exists() and not stale.exists()
    assert not mine.exists()


# -- mismatched pairs, missing extras, internal errors, signals --------------------------------------------------
def test_parity_with_another_checkpoints_bundle_is_a_user_error(work, capsys, tmp_path):
    other = tmp_path / "other"
    assert main(["train", "--data", str(work / "tiny.npz"), "-o", str(other), *TRAIN[:2], "--set", "hidden=12",
                 "--set", "blocks=1", "--no-progress", "--test-fraction", "0.25"]) == OK
    assert main(["export", str(other), "-o", str(tmp_path / "ob"), "--reference", "2", "--no-wavefront"]) == OK
    capsys.readouterr()
    code, _, err = run(["parity", work / "ckpt", "--bundle", tmp_path / "ob", "-n", "2"], capsys)
    assert code == USER and "was not exported from" in err and re.search(r"config differs in [a-z_, ]*\bhidden\b", err)


def test_internal_errors_are_one_line_and_the_traceback_is_behind_debug(work, capsys, monkeypatch):
    import pixelrt.runtime.pipelines as pipelines

    monkeypatch.setattr(pipelines, "pipeline", lambda b: 1 / 0)
    code, _, err = run(["sample", work / "bundle", "-n", "1", "-o", work / "z.png"], capsys)
    assert code == INTERNAL and "internal error: ZeroDivisionError" in err and "--debug" in err
    code = main(["sample", str(work / "bundle"), "-n", "1", "-o", str(work / "z.png"), "--debug"])
    assert code == INTERNAL and "Traceback" in capsys.readouterr().err


def _cli(*argv, **kw):
    return subprocess.run([sys.executable, "-m", "pixelrt", *map(str, argv)], capture_output=True, text=True, **kw)


def test_a_command_that_needs_torch_says_so_on_a_runtime_install(work, tmp_path):
    block = tmp_path / "sitecustomize.py"  # torch and scikit-learn absent, as on `pip install pixelrt[runtime]`
    block.write_text("import sys\nfor m in ('torch', 'sklearn'):\n    sys.modules[m] = None\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = _cli("export", work / "ckpt", "-o", tmp_path / "b", env=env)
    assert r.returncode == USER and "Traceback" not in r.stderr
    assert "needs PyTorch" in r.stderr and "pixelrt[export]" in r.stderr
    r = _cli("verify", work / "bundle", env=env)  # the device-side check needs no torch
    assert r.returncode == OK, r.stderr


def test_sigterm_removes_partial_outputs_and_exits_143(work, tmp_path):
    import signal
    import time

    out = tmp_path / "b"
    p = subprocess.Popen([sys.executable, "-m", "pixelrt", "export", str(work / "ckpt"), "-o", str(out)],
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not any(".tmp-" in q.name for q in tmp_path.iterdir()):
        time.sleep(0.02)  # the export has started writing its temporary folder
    time.sleep(1.5)  # inside torch.onnx's trace, whose capture strategies catch errors and retry
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 143 and "terminated" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_closed_pipe_ends_quietly(work):
    r = subprocess.run(f"{sys.executable} -m pixelrt info {work / 'bundle'} | head -c 1", shell=True,
                       capture_output=True, text=True)
    assert r.stderr == "" and len(r.stdout) == 1


def test_json_dash_writes_one_document_to_stdout(work):
    r = _cli("verify", work / "bundle", "--json", "-")
    assert r.returncode == OK and json.loads(r.stdout)["ok"] is True  # the table went to stderr
    assert "causality probe" in r.stderr


def test_diagnostics_go_to_stderr_and_quiet_keeps_only_results(work, capsys, tmp_path):
    argv = ["train", "--data", work / "tiny.npz", "-o", tmp_path / "c", *TRAIN]
    code, out, err = run(argv, capsys)
    assert code == OK, err
    assert "epoch   1" in err and "epoch   1" not in out  # per-epoch lines: diagnostics
    assert "best held-out" in out  # the result
    code, out, err = run([*argv, "--force", "-q"], capsys)
    assert code == OK and "epoch" not in err and "best held-out" in out
