"""The backend interface: open a graph, bind named arrays, run, close.

Polygraphy's runner design: ``activate`` / ``infer`` / ``deactivate``, with the
base class checking inputs, so every backend (ONNX Runtime here; TensorRT and
a PyTorch reference elsewhere) fails the same way on a wrong feed. Sampling,
evaluation and parity are written once against this interface.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pixelrt.errors import PixelrtError

# ONNX element type names as they appear in graph metadata and manifests.
ONNX_TO_NUMPY = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8, "tensor(bool)": np.bool_,
}


class Backend:
    """Base class of a runner. Subclasses implement _activate, _infer, _deactivate and fill ``inputs``.

    ``inputs`` maps each input name to (numpy dtype, shape) where a shape entry
    is an int for a fixed axis or a string/None for a dynamic one.
    """

    name = "backend"

    def __init__(self, path: str | Path):
        self.graph = path  # a bundle GraphFile (verified bytes, checked against the manifest) or a plain path
        self.path = Path(path)
        self.inputs: dict[str, tuple[np.dtype, tuple]] = {}
        self.output_names: list[str] = []
        self.active = False

    # -- lifecycle ---------------------------------------------------------------
    def activate(self) -> "Backend":
        if not self.active:
            self._activate()
            self.active = True
        return self

    def deactivate(self) -> None:
        if self.active:
            self._deactivate()
            self.active = False

    def __enter__(self) -> "Backend":
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    # -- inference ---------------------------------------------------------------
    def check(self, feeds: dict[str, np.ndarray]) -> None:
        """Raise PixelrtError on a missing, unknown, mistyped or misshapen input."""
        missing = sorted(set(self.inputs) - set(feeds))
        unknown = sorted(set(feeds) - set(self.inputs))
        if missing or unknown:
            raise PixelrtError(
                f"{self.path.name}: inputs do not match the graph (missing: {missing or 'none'}, "
                f"unexpected: {unknown or 'none'}); the bundle and this pixelrt disagree, re-run `pixelrt export`"
            )
        for name, (dtype, shape) in self.inputs.items():
            arr = feeds[name]
            if not isinstance(arr, np.ndarray) or arr.dtype != dtype:
                got = getattr(arr, "dtype", type(arr).__name__)
                raise PixelrtError(f"{self.path.name}: input {name!r} must be {np.dtype(dtype).name}, got {got}")
            if arr.ndim != len(shape) or any(
                isinstance(d, int) and d != a for d, a in zip(shape, arr.shape)
            ):
                raise PixelrtError(
                    f"{self.path.name}: input {name!r} has shape {arr.shape}, the graph expects {tuple(shape)}"
                )

    def infer(self, feeds: dict[str, np.ndarray], check: bool = True) -> dict[str, np.ndarray]:
        """Run the graph. ``check=False`` skips input checks in hot loops after a checked first call."""
        if not self.active:
            raise RuntimeError(f"{self.name} backend for {self.path.name} is not active; call activate() first")
        if check:
            self.check(feeds)
        return self._infer(feeds)

    def _activate(self) -> None:
        raise NotImplementedError

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _deactivate(self) -> None:
        raise NotImplementedError
