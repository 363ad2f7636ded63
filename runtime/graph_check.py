"""A bundle graph against its manifest, as ONNX Runtime sees it: I/O names, element types, static
dimensions, and the identity export wrote into its ``metadata_props``.

Run by the ORT backend whenever it opens a bundle graph, and for every graph by ``pixelrt info``
and ``pixelrt doctor`` (:func:`check_bundle_graphs`). Torch-free; onnx is not needed.
"""
from __future__ import annotations

import os
import sys

import onnxruntime as ort

from pixelrt.bundle.identity import identity_mismatch
from pixelrt.bundle.loader import Bundle, GraphFile, sub_bundles
from pixelrt.bundle.manifest import REEXPORT
from pixelrt.bundle.records import SYMBOLIC
from pixelrt.errors import BundleError

ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
             "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(uint8)": "uint8", "tensor(int8)": "int8",
             "tensor(bool)": "bool"}


def _dims_differ(want: tuple, got: list) -> bool:
    if len(want) != len(got):
        return True
    for w, g in zip(want, got):
        if isinstance(g, int) and (w in SYMBOLIC or w != g):  # a static axis of the graph must be the manifest's
            return True
        if not isinstance(g, int) and w not in SYMBOLIC:  # a dynamic axis is the batch (or pixels), declared so
            return True
    return False


def check_session(graph: GraphFile, session: ort.InferenceSession) -> None:
    """BundleError naming the graph and the first field where ``session`` and the manifest disagree."""
    where = f"{graph.path}: the graph does not match {graph.bundle.root}/manifest.json"
    mismatch = identity_mismatch(graph.bundle.manifest, graph.graph, session.get_modelmeta().custom_metadata_map)
    if mismatch:
        raise BundleError(f"{where}: {mismatch}; {REEXPORT}")
    spec = graph.spec
    for side, declared, actual in (("inputs", spec.inputs, session.get_inputs()),
                                   ("outputs", spec.outputs, session.get_outputs())):
        found = {a.name: a for a in actual}
        if set(found) != {t.name for t in declared}:
            raise BundleError(f"{where}: graphs.{graph.graph}.{side} lists {sorted(t.name for t in declared)}, the "
                              f"graph {'takes' if side == 'inputs' else 'gives'} {sorted(found)}; {REEXPORT}")
        for t in declared:
            a = found.get(t.name)
            if a is None:
                raise BundleError(f"{where}: graphs.{graph.graph}.{side} lists {t.name!r}, which the graph lacks; "
                                  f"{REEXPORT}")
            if ORT_TYPES.get(a.type) != t.dtype or _dims_differ(tuple(t.shape), list(a.shape)):
                raise BundleError(f"{where}: {side[:-1]} {t.name!r} is {ORT_TYPES.get(a.type, a.type)} {list(a.shape)} "
                                  f"in the graph, {t.dtype} {list(t.shape)} in graphs.{graph.graph}.{side}; "
                                  f"{REEXPORT}")


def open_session(graph, opts: ort.SessionOptions, providers: list) -> ort.InferenceSession:
    """A session on ``graph``: a bundle GraphFile is read from its verified bytes and checked against the
    manifest (so neither a swapped file nor ONNX external data from disk is ever run); a plain path as is."""
    source = graph.read() if isinstance(graph, GraphFile) else str(graph)
    if isinstance(graph, GraphFile):
        # ORT resolves a graph-from-bytes' external data against this folder (by default: the current directory,
        # outside the bundle). A folder below a regular file cannot exist, so no external data is ever read.
        opts.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                      os.path.join(sys.executable, "no-external-data"))
    try:
        session = ort.InferenceSession(source, sess_options=opts, providers=providers)
    except Exception as e:  # noqa: BLE001 - ORT raises several unrelated types for a bad file
        detail = " ".join(str(e).split())[:200]
        hint = (" (bundle graphs must be self-contained: ONNX external data is not read)"
                if "external" in detail.lower() else "")
        raise BundleError(f"{graph}: ONNX Runtime cannot load this graph ({detail}){hint}; {REEXPORT}") from None
    if isinstance(graph, GraphFile):
        check_session(graph, session)
    return session


def check_graph_file(graph: GraphFile) -> None:
    """Open one bundle graph on the CPU without optimisation, only to check it against the manifest (what a
    backend that does not go through ORT, such as native TensorRT, runs first)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    open_session(graph, opts, ["CPUExecutionProvider"])


def check_bundle_graphs(bundle: Bundle) -> int:
    """Check every graph of a bundle and its parts (:func:`check_graph_file`); the count checked."""
    n = 0
    for part in [bundle] + [b for _, b in sub_bundles(bundle)]:
        for name in part.graphs:
            check_graph_file(part.graph_path(name))
            n += 1
    return n
