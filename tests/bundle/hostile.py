"""Hostile bundles for the containment and validation tests: build them from a real exported bundle,
run everything a user would run on them, and record every file Python opens meanwhile.

The audit hook (``sys.addaudithook``, event ``open``) stays installed for the session (hooks cannot be
removed); it records only while an :class:`OpenAudit` is active.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path


from pixelrt.bundle import load_bundle, sha256_file, sub_bundles
from tests.runtime.bundle_edits import rehash  # noqa: F401 - re-exported for the hostile tests

_RECORDING: list | None = None


def _hook(event: str, args: tuple) -> None:
    if _RECORDING is not None and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        _RECORDING.append(os.path.realpath(path))


sys.addaudithook(_hook)


class OpenAudit:
    """Records the real path of every file opened while active."""

    def __enter__(self) -> list[str]:
        global _RECORDING
        self.opened: list[str] = []
        _RECORDING = self.opened
        return self.opened

    def __exit__(self, *exc) -> None:
        global _RECORDING
        _RECORDING = None


def opened_under(opened: list[str], folder: Path) -> list[str]:
    base = os.path.realpath(folder)
    return [p for p in opened if os.path.commonpath([p, base]) == base]


# ------------------------------------------------------------------ editing copies

def copy_bundle(root: Path, dst: Path) -> Path:
    shutil.copytree(root, dst, symlinks=True)
    return dst


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def write_json(path: Path, doc) -> None:
    path.write_text(json.dumps(doc, indent=1))


def digests(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_symlink():
            out[p.relative_to(root).as_posix()] = "link:" + os.readlink(p)
        elif p.is_file():
            out[p.relative_to(root).as_posix()] = sha256_file(p)
    return out


# ------------------------------------------------------------------ what a user runs

def use(root: Path) -> None:
    """Everything a user runs on a bundle with the runtime: load, check every graph, evaluate the reference
    batch against its export-time log-likelihoods, sample one image. Raises on the first problem."""
    from pixelrt.runtime.backends import open_backend, step_backends
    from pixelrt.runtime.evaluate import evaluate
    from pixelrt.runtime.graph_check import check_bundle_graphs
    from pixelrt.runtime.reference_check import check_reference
    from pixelrt.runtime.sampler import bundle_loop, make_noise

    b = load_bundle(root)
    check_bundle_graphs(b)
    if b.kind == "autoregressive":
        ref = b.reference()
        with open_backend("ort", b.graph_path("full")) as full:
            again = evaluate(full, b, ref["x"], context={k: ref[k] for k in b.context})
        check_reference(b, again.loglik, ref["loglik"])
        if not b.context:
            with step_backends("ort", b) as (step, row):
                bundle_loop(step, row, b, make_noise(1, b.image, 0, b.step_schedule))
    elif b.kind == "multiscale":
        from pixelrt.runtime.multiscale import evaluate_multiscale, open_multiscale, sample_multiscale

        ms = open_multiscale(b)
        ref = b.reference()
        check_reference(b, evaluate_multiscale(ms, ref["x"]).loglik, ref["loglik"])
        sample_multiscale(ms, 1, seed=0)
    elif b.kind == "pixelvae":
        from pixelrt.runtime.pixelvae import open_pixelvae, pixelvae_backends, sample_pixelvae

        pv = open_pixelvae(b)
        with pixelvae_backends(pv, step=True) as be:
            sample_pixelvae(pv, be, 1, seed=0)
    for _, part in sub_bundles(b):
        part.reference()


def all_leaves(doc, path=()):
    """(path tuple, value) of every leaf and every container of a JSON document."""
    yield path, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from all_leaves(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from all_leaves(v, path + (i,))


def dotted(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def set_at(doc, path: tuple, value):
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


def delete_at(doc, path: tuple):
    node = doc
    for p in path[:-1]:
        node = node[p]
    del node[path[-1]]
