"""Runtime names -> backends. Every command that runs a graph takes ``--runtime NAME``."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from pixelrt.errors import PixelrtError

RUNTIMES = {
    "ort": "ONNX Runtime, CPU execution provider",
    "ort-cuda": "ONNX Runtime, CUDA execution provider with IOBinding on the device (needs onnxruntime-gpu and a CUDA device)",
    "ort-cuda-graph": "as ort-cuda, with CUDA graphs (enable_cuda_graph) replaying each call",
    "ort-trt": "ONNX Runtime, TensorRT execution provider with an engine cache (needs onnxruntime-gpu and TensorRT)",
    "trt": "native TensorRT: cached engines, the step loop resident on the GPU with CUDA graphs (needs tensorrt, cuda-python)",
}


def open_backend(runtime: str, path: str | Path):
    """An inactive backend for the graph at ``path``; use it as a context manager."""
    if runtime == "ort":
        from pixelrt.runtime.ort_backend import OrtBackend

        return OrtBackend(path, device="cpu")
    if runtime in ("ort-cuda", "ort-cuda-graph"):
        from pixelrt.runtime.ort_backend import OrtBackend

        return OrtBackend(path, device="cuda", cuda_graph=runtime == "ort-cuda-graph")
    if runtime == "ort-trt":
        from pixelrt.runtime.ort_backend import OrtBackend

        return OrtBackend(path, device="tensorrt")
    if runtime == "trt":
        from pixelrt.runtime.trt_backend import TrtBackend, TrtStepBackend, import_tensorrt
        from pixelrt.runtime.cuda_runtime import modules

        import_tensorrt(), modules()  # one clear error now, not at activate()
        from pixelrt.bundle import GraphFile

        if isinstance(path, GraphFile):  # TensorRT parses the file itself: check it against the manifest first
            from pixelrt.runtime.graph_check import check_graph_file

            check_graph_file(path)
        from pixelrt.runtime.trt_profiles import get_profile

        # scripts and parity runs pick the build profile and TF32 through the environment
        profile = get_profile(os.environ.get("PIXELRT_TRT_PROFILE", "server"))
        if os.environ.get("PIXELRT_TRT_TF32", "1") == "0":
            profile = profile.with_options(tf32=False)
        return TrtStepBackend(path, profile) if Path(path).stem == "step" else TrtBackend(path, profile)
    raise PixelrtError(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")


@contextmanager
def step_backends(runtime: str, bundle):
    """Active backends on a bundle's step graph and, when its schedule has one, its per-row graph.

    Yields ``(step, row)``; ``row`` is None for bundles without a per-row graph. With ``trt`` the
    step backend runs the whole loop on the device, per-row graph included: the row backend is
    attached to it (``step.row_backend``) and ``row`` is None, so ``bundle_loop`` hands it the loop.
    """
    row_graph = bundle.step_schedule.row_graph
    with open_backend(runtime, bundle.graph_path("step")) as step:
        if row_graph is None:
            yield step, None
        else:
            with open_backend(runtime, bundle.graph_path(row_graph)) as row:
                if hasattr(step, "bundle_loop") and hasattr(step, "row_backend"):
                    step.row_backend = row
                    yield step, None
                else:
                    yield step, row
