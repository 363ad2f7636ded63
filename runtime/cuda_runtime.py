"""The few CUDA runtime calls the TensorRT backend needs, through cuda-python (never torch).

cuda-python >= 12.6 exposes the runtime as ``cuda.bindings.runtime``; older releases as
``cuda.cudart``: both are feature-detected. Every call returns ``(err, *values)``; :func:`check`
turns a non-success code into a PixelrtError naming the call. Small per-step kernels (the step
loop's bookkeeping) are compiled once at run time with NVRTC (``cuda.bindings.nvrtc``) and launched
through the driver API, so they can be captured into a CUDA graph with the TensorRT enqueue.
"""
from __future__ import annotations

import ctypes

import numpy as np

from pixelrt.errors import PixelrtError

INSTALL = ("`pip install pixelrt[gpu]` on a machine with an NVIDIA driver (cuda-python, tensorrt, "
           "onnxruntime-gpu); on a Jetson use JetPack's TensorRT, see docs/jetson.md")


def modules():
    """(runtime, driver, nvrtc) modules of cuda-python, or a PixelrtError saying how to install them."""
    try:
        from cuda.bindings import driver, nvrtc, runtime
    except ImportError:
        try:
            from cuda import cuda as driver, cudart as runtime, nvrtc  # cuda-python < 12.6
        except ImportError:
            raise PixelrtError(f"the TensorRT runtime needs cuda-python, which is not installed; {INSTALL}") from None
    return runtime, driver, nvrtc


def check(result, what: str):
    """Unwrap ``(err, *values)``; raise on an error code."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        name = getattr(err, "name", str(err))
        hint = ""
        if name in ("cudaErrorInsufficientDriver", "cudaErrorNoDevice", "CUDA_ERROR_NO_DEVICE"):
            hint = "; no usable NVIDIA GPU/driver on this machine (check `nvidia-smi`)"
        raise PixelrtError(f"CUDA call {what} failed: {name}{hint}")
    return values[0] if len(values) == 1 else tuple(values) if values else None


class DeviceBuffer:
    """One device allocation (cudaMalloc) with its numpy dtype and shape."""

    def __init__(self, rt, shape: tuple, dtype):
        self.rt, self.shape, self.dtype = rt, tuple(int(d) for d in shape), np.dtype(dtype)
        self.nbytes = max(1, int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize)
        self.ptr = int(check(rt.cudaMalloc(self.nbytes), "cudaMalloc"))

    def upload(self, array: np.ndarray, stream) -> None:
        a = np.ascontiguousarray(array, dtype=self.dtype)
        if a.nbytes > self.nbytes:
            raise PixelrtError(f"internal: {a.nbytes} bytes do not fit a {self.nbytes}-byte device buffer")
        check(self.rt.cudaMemcpyAsync(self.ptr, a.ctypes.data, a.nbytes,
                                      self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync H2D")
        check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")  # `a` may be a temporary

    def download(self, stream, shape=None) -> np.ndarray:
        out = np.empty(shape or self.shape, dtype=self.dtype)
        check(self.rt.cudaMemcpyAsync(out.ctypes.data, self.ptr, out.nbytes,
                                      self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync D2H")
        check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        return out

    def zero(self, stream) -> None:
        check(self.rt.cudaMemsetAsync(self.ptr, 0, self.nbytes, stream), "cudaMemsetAsync")

    def free(self) -> None:
        if self.ptr:
            self.rt.cudaFree(self.ptr)
            self.ptr = 0


def device_name_and_cc(rt, device: int = 0) -> tuple[str, str]:
    prop = check(rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
    return name, f"{prop.major}.{prop.minor}"


class Kernels:
    """NVRTC-compiled kernels, loaded into the current context; ``launch(name, grid, block, args, stream)``.

    args: a list of (value, ctypes type) pairs, passed by pointer as cuLaunchKernel expects.
    """

    def __init__(self, source: str, names: list[str], name: str = "pixelrt_loop.cu"):
        rt, drv, nvrtc = modules()
        self.drv = drv
        check(rt.cudaFree(0), "cudaFree(0) (context init)")
        prog = check(nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], []), "nvrtcCreateProgram")
        major, minor = (int(v) for v in device_name_and_cc(rt)[1].split("."))
        opts = [f"--gpu-architecture=compute_{major}{minor}".encode(), b"-default-device"]
        err, = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        if int(err) != 0:
            size = check(nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
            log = b" " * size
            nvrtc.nvrtcGetProgramLog(prog, log)
            raise PixelrtError(f"NVRTC could not compile the step-loop kernels: {log.decode(errors='replace')[:800]}")
        size = check(nvrtc.nvrtcGetPTXSize(prog), "nvrtcGetPTXSize")
        ptx = b" " * size
        check(nvrtc.nvrtcGetPTX(prog, ptx), "nvrtcGetPTX")
        self.module = check(drv.cuModuleLoadData(np.char.array(ptx).ctypes.data), "cuModuleLoadData")
        self.functions = {n: check(drv.cuModuleGetFunction(self.module, n.encode()), f"cuModuleGetFunction {n}")
                          for n in names}

    def launch(self, name: str, grid: int, block: int, args: list, stream) -> None:
        values = [ctype(v) for v, ctype in args]
        ptrs = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
        check(self.drv.cuLaunchKernel(self.functions[name], grid, 1, 1, block, 1, 1, 0, int(stream),
                                      ctypes.addressof(ptrs), 0), f"cuLaunchKernel {name}")
