"""ONNX Runtime backend (CPU; the CUDA execution provider when it is installed and asked for)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from pixelrt.errors import BundleError, PixelrtError
from pixelrt.runtime.backend import ONNX_TO_NUMPY, Backend

PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


class OrtBackend(Backend):
    name = "ort"

    def __init__(self, path: str | Path, device: str = "cpu", threads: int = 0):
        super().__init__(path)
        if device not in PROVIDERS:
            raise PixelrtError(f"unknown ONNX Runtime device {device!r}; choose one of {', '.join(PROVIDERS)}")
        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise PixelrtError("the CUDA execution provider is not available; `pip install pixelrt[gpu]` on a CUDA machine")
        self.device, self.threads = device, threads
        self.session: ort.InferenceSession | None = None

    def _activate(self) -> None:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if self.threads:
            opts.intra_op_num_threads = self.threads
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=PROVIDERS[self.device])
        except Exception as e:  # noqa: BLE001 - ORT raises several unrelated types for a bad file
            raise BundleError(f"{self.path}: ONNX Runtime cannot load this graph ({str(e)[:200]}); re-run `pixelrt export`") from None
        self.inputs = {
            i.name: (np.dtype(ONNX_TO_NUMPY[i.type]), tuple(d if isinstance(d, int) else None for d in i.shape))
            for i in self.session.get_inputs()
        }
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))

    def _deactivate(self) -> None:
        self.session = None
