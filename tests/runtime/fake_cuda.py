"""A host-memory stand-in for the CUDA runtime, NVRTC kernels and TensorRT engines, so that
:class:`pixelrt.runtime.trt_device.CudaDevice` itself (buffers, uploads, kernel argument lists, graph
capture and replay, the row engine, the device-to-device copies) runs on a CPU.

* "device" pointers are real host addresses of numpy buffers; copies and memsets are ``memmove`` /
  ``memset``;
* the kernels are the real CUDA C source (:data:`pixelrt.runtime.trt_kernels.KERNELS`) compiled for
  the host with a C++ compiler, ``blockIdx``/``threadIdx`` set per simulated thread;
* an engine is an ONNX Runtime session reading its inputs from, and writing its outputs to, the
  addresses bound with ``bind`` (by name, as ``set_tensor_address``);
* stream capture records every launch, enqueue and copy with the arguments and *bindings of capture
  time*; a graph launch replays the record, as a CUDA graph replays fixed addresses.
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from pixelrt.runtime.trt_kernels import KERNELS

PRELUDE = r"""
#include <cstddef>
struct pixelrt_idx { int x; };
static pixelrt_idx blockIdx, threadIdx, blockDim;
extern "C" void pixelrt_set_idx(int b, int t, int bd) { blockIdx.x = b; threadIdx.x = t; blockDim.x = bd; }
#define __global__
"""


def compiler() -> str | None:
    return shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


class FakeRuntime:
    """The cudart calls CudaDevice, DeviceBuffer and Kernels make, on host memory."""

    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2, cudaMemcpyDeviceToDevice=3)
    cudaStreamCaptureMode = SimpleNamespace(cudaStreamCaptureModeThreadLocal=1)

    def __init__(self):
        self.memory: dict[int, np.ndarray] = {}
        self.capturing: list | None = None
        self.counts = {"launch": 0, "replay": 0, "captured": 0}

    def do(self, op) -> None:
        """Run ``op`` now, or record it when a capture is open."""
        if self.capturing is not None:
            self.capturing.append(op)
        else:
            op()

    def cudaMalloc(self, n):
        buf = np.zeros(int(n) + 16, dtype=np.uint8)  # room for the kernels' scalar writes
        self.memory[buf.ctypes.data] = buf
        return 0, buf.ctypes.data

    def cudaFree(self, ptr):
        self.memory.pop(int(ptr), None)
        return (0,)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        self.do(lambda: ctypes.memmove(int(dst), int(src), int(n)))
        return (0,)

    def cudaMemsetAsync(self, ptr, value, n, stream):
        self.do(lambda: ctypes.memset(int(ptr), int(value), int(n)))
        return (0,)

    def cudaStreamSynchronize(self, stream):
        return (0,)

    def cudaStreamBeginCapture(self, stream, mode):
        assert self.capturing is None, "nested capture"
        self.capturing = []
        return (0,)

    def cudaStreamEndCapture(self, stream):
        ops, self.capturing = self.capturing, None
        self.counts["captured"] += 1
        return 0, ops

    def cudaGraphInstantiate(self, graph, flags):
        return 0, list(graph)

    def cudaGraphLaunch(self, graph, stream):
        self.counts["replay"] += 1
        for op in graph:
            op()
        return (0,)

    def cudaGraphExecDestroy(self, graph):
        return (0,)


class HostKernels:
    """``Kernels`` with the real CUDA C compiled for the host: one call per simulated thread."""

    def __init__(self, rt: FakeRuntime, lib: ctypes.CDLL, names: list[str]):
        self.rt, self.lib = rt, lib
        self.functions = {n: getattr(lib, n) for n in names}

    def launch(self, name: str, grid: int, block: int, args: list, stream) -> None:
        values = [ctype(v) for v, ctype in args]  # CudaDevice's own argument list, by value at launch
        fn = self.functions[name]
        self.rt.counts["launch"] += self.rt.capturing is None

        def run():
            for b in range(grid):
                for t in range(block):
                    self.lib.pixelrt_set_idx(b, t, block)
                    fn(*values)

        self.rt.do(run)


_LIBS: dict[str, ctypes.CDLL] = {}


def build_kernels(tmp: Path) -> ctypes.CDLL:
    """The kernels compiled for the host (once per process and source)."""
    src = PRELUDE + KERNELS
    if src in _LIBS:
        return _LIBS[src]
    path = Path(tmp) / "pixelrt_loop_host.cpp"
    path.write_text(src)
    lib = Path(tmp) / "pixelrt_loop_host.so"
    subprocess.run([compiler(), "-shared", "-fPIC", "-O1", "-x", "c++", str(path), "-o", str(lib)], check=True,
                   capture_output=True)
    _LIBS[src] = ctypes.CDLL(str(lib))
    return _LIBS[src]


class OrtEngine:
    """TrtEngine's interface over an ONNX Runtime backend, reading and writing bound addresses."""

    def __init__(self, rt: FakeRuntime, backend, name: str):
        from pixelrt.runtime.trt_host import output_specs

        self.rt, self.backend, self.path = rt, backend, Path(f"{name}.onnx")
        self.stream = 7
        self.inputs = dict(backend.inputs)
        self.outputs, _ = output_specs(backend)
        self.addresses: dict[str, int] = {}
        self.shapes: dict[str, tuple] = {}

    def set_batch(self, batch: int, shapes: dict) -> dict:
        self.shapes = {n: tuple(int(d) for d in s) for n, s in shapes.items()}
        self.out_shapes = {n: tuple(batch if d is None else d for d in spec[1]) for n, spec in self.outputs.items()}
        return self.out_shapes

    def bind(self, name: str, ptr: int) -> None:
        self.addresses[name] = int(ptr)

    def enqueue(self, stream=None) -> None:
        bound = dict(self.addresses)  # a captured graph keeps the addresses of capture time
        self.rt.do(lambda: self._execute(bound))

    def _execute(self, bound: dict) -> None:
        feeds = {}
        for name, (dtype, _) in self.inputs.items():
            shape = self.shapes[name]
            n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            raw = (ctypes.c_char * max(n, 1)).from_address(bound[name])
            feeds[name] = np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape, dtype=np.int64))).reshape(shape).copy()
        out = self.backend.infer(feeds, check=False)
        for name in self.outputs:
            value = np.ascontiguousarray(out[name])
            assert value.shape == self.out_shapes[name] and value.dtype == self.outputs[name][0], (name, value.shape)
            ctypes.memmove(bound[name], value.ctypes.data, value.nbytes)


def cuda_device(monkeypatch, tmp, step, row=None, cuda_graph: bool = True):
    """A real CudaDevice on the fake runtime, over ORT backends ``step`` (and ``row``)."""
    import pixelrt.runtime.trt_device as trt_device
    from pixelrt.runtime.trt_kernels import KERNEL_NAMES

    rt = FakeRuntime()
    lib = build_kernels(tmp)
    monkeypatch.setattr(trt_device, "Kernels", lambda source, names: HostKernels(rt, lib, names))
    engine = OrtEngine(rt, step, "step")
    row_engine = OrtEngine(rt, row, "row") if row is not None else None
    device = trt_device.CudaDevice(engine, cuda_graph=cuda_graph, log=lambda s: None, row_engine=row_engine)
    assert list(device.kernels.functions) == KERNEL_NAMES
    return device, rt


def tmpdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="pixelrt-fake-cuda-"))
