"""Runtime names -> backends. Every command that runs a graph takes ``--runtime NAME``."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from pixelrt.errors import PixelrtError

RUNTIMES = {
    "ort": "ONNX Runtime, CPU execution provider",
    "ort-cuda": "ONNX Runtime, CUDA execution provider (needs onnxruntime-gpu and a CUDA device)",
}


def open_backend(runtime: str, path: str | Path):
    """An inactive backend for the graph at ``path``; use it as a context manager."""
    if runtime == "ort":
        from pixelrt.runtime.ort_backend import OrtBackend

        return OrtBackend(path, device="cpu")
    if runtime == "ort-cuda":
        from pixelrt.runtime.ort_backend import OrtBackend

        return OrtBackend(path, device="cuda")
    raise PixelrtError(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")


@contextmanager
def step_backends(runtime: str, bundle):
    """Active backends on a bundle's step graph and, when its schedule has one, its per-row graph.

    Yields ``(step, row)``; ``row`` is None for bundles without a per-row graph.
    """
    row_graph = bundle.step_schedule.row_graph
    with open_backend(runtime, bundle.graph_path("step")) as step:
        if row_graph is None:
            yield step, None
        else:
            with open_backend(runtime, bundle.graph_path(row_graph)) as row:
                yield step, row
