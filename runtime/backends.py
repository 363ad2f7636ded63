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


LOOPS = {
    "auto": "the wavefront loop where the bundle has one and the runtime runs it (ort, ort-cuda), else raster",
    "raster": "one pixel of each image per call, in raster order (every runtime)",
    "wave": "several pixels of each image per call (bundles whose schedule has a wavefront graph; ort, ort-cuda)",
}
WAVE_RUNTIMES = ("ort", "ort-cuda")  # shapes change every call: no CUDA graph, no TensorRT engine per shape


def wave_loop_used(runtime: str, bundle, loop: str = "auto") -> bool:
    """Whether ``step_backends(runtime, bundle, loop)`` samples with the wavefront graph (PixelrtError for
    a ``loop`` that cannot be honoured)."""
    if loop not in LOOPS:
        raise PixelrtError(f"unknown loop {loop!r}; choose one of: {', '.join(LOOPS)}")
    has = bundle.step_schedule.wavefront is not None
    if loop == "wave" and not has:
        raise PixelrtError(f"{bundle.root} has no wavefront graph (its schedule has none): sample with "
                           "--loop raster, or re-export it with this pixelrt if its family has one (pixelcnn)")
    if loop == "wave" and runtime not in WAVE_RUNTIMES:
        raise PixelrtError(f"the wavefront loop runs on {', '.join(WAVE_RUNTIMES)}, not {runtime}; use --loop raster")
    return has and loop != "raster" and runtime in WAVE_RUNTIMES


@contextmanager
def step_backends(runtime: str, bundle, loop: str = "auto"):
    """Active backends on a bundle's step graph and, when its schedule has one, its per-row graph.

    Yields ``(step, row)``; ``row`` is None for bundles without a per-row graph. With ``trt`` the
    step backend runs the whole loop on the device, per-row graph included: the row backend is
    attached to it (``step.row_backend``) and ``row`` is None, so ``bundle_loop`` hands it the loop.
    With a wavefront graph (``loop``: LOOPS) the step backend comes wrapped with it
    (runtime/wavefront.py ``WavefrontRunner``), which runs ``bundle_loop`` several pixels per call.
    """
    row_graph = bundle.step_schedule.row_graph
    wave = wave_loop_used(runtime, bundle, loop)
    with open_backend(runtime, bundle.graph_path("step")) as step:
        if wave:
            from pixelrt.runtime.wavefront import WavefrontRunner

            with open_backend(runtime, bundle.graph_path(bundle.step_schedule.wavefront.graph)) as w:
                yield WavefrontRunner(step, w), None
        elif row_graph is None:
            yield step, None
        else:
            with open_backend(runtime, bundle.graph_path(row_graph)) as row:
                if hasattr(step, "bundle_loop") and hasattr(step, "row_backend"):
                    step.row_backend = row
                    yield step, None
                else:
                    yield step, row
