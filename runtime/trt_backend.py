"""Native TensorRT backend: engine build (cached), name-based I/O, ``execute_async_v3``.

Works with the TensorRT 10.x and 11.x Python APIs by feature detection, never by version pins:

* the network is created strongly typed (``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` where the
  enum has it; TensorRT 11 is always strongly typed and ignores the flag), so the engine runs in the
  precision the ONNX graph is written in. No FP16/INT8 builder flag is ever set (11.x removed them);
  FP16/INT8 bundles come from `pixelrt calibrate`;
* TF32 is cleared with ``BuilderFlag.TF32`` where it exists (parity runs);
* DLA: ``default_device_type = DeviceType.DLA``, ``DLA_core`` and ``BuilderFlag.GPU_FALLBACK``;
* I/O by tensor name: ``num_io_tensors`` / ``get_tensor_name`` / ``get_tensor_mode``,
  ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3(stream)``.

``TrtBackend`` implements the Backend interface (activate / infer / deactivate) with host arrays in
and out, for evaluation and the generic step loop. The device-resident loop is
:mod:`pixelrt.runtime.trt_loop`; it reuses :class:`TrtEngine` from here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pixelrt.errors import PixelrtError
from pixelrt.runtime.backend import Backend
from pixelrt.runtime.cuda_runtime import INSTALL, DeviceBuffer, check, device_name_and_cc, modules
from pixelrt.runtime.engine_cache import DeviceInfo, EngineCache
from pixelrt.runtime.trt_profiles import BuildProfile, get_profile


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise PixelrtError(f"the `trt` runtime needs TensorRT's Python package, which is not installed; {INSTALL}") from None
    return trt


def trt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def current_device() -> DeviceInfo:
    trt = import_tensorrt()
    rt, _, _ = modules()
    count = check(rt.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if not count:
        raise PixelrtError(f"no CUDA device is visible (check `nvidia-smi` and CUDA_VISIBLE_DEVICES); {INSTALL}")
    name, cc = device_name_and_cc(rt)
    return DeviceInfo(name, cc, str(trt.__version__))


def make_logger(trt):
    """A TensorRT logger that keeps warnings and errors, so a failed parse/build can quote them."""

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages = []

        def log(self, severity, msg):
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                self.messages.append(str(msg))

    return Logger()


def build_serialized(onnx_path: Path, options: dict, input_shapes: dict, log=print) -> bytes:
    """Parse ``onnx_path`` and build a serialized engine with ``options`` (BuildProfile.options()).

    input_shapes: graph input name -> shape with None for the batch axis; the optimization profile
    spans options["batch"] (min, opt, max) on that axis.
    """
    trt = import_tensorrt()
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    creation = getattr(trt, "NetworkDefinitionCreationFlag", None)
    if creation is not None and hasattr(creation, "STRONGLY_TYPED"):
        flags |= 1 << int(creation.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    from pixelrt.bundle import GraphFile

    # a bundle graph is parsed from its verified bytes (and with no path, so no external data is resolved)
    parsed = parser.parse(onnx_path.read()) if isinstance(onnx_path, GraphFile) else parser.parse_from_file(str(onnx_path))
    if not parsed:
        errors = "; ".join(str(parser.get_error(k)) for k in range(parser.num_errors))
        raise PixelrtError(f"TensorRT cannot parse {onnx_path.name}: {errors[:600]}; run "
                           "`pixelrt doctor BUNDLE --target tensorrt` for the unsupported nodes")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options["workspace_mib"]) << 20)
    if hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = int(options["optimization_level"])
    if not options["tf32"] and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if options.get("dla_core") is not None:
        if builder.num_DLA_cores <= options["dla_core"]:
            raise PixelrtError(f"DLA core {options['dla_core']} requested but this device has "
                               f"{builder.num_DLA_cores} DLA cores; leave --dla-core out")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(options["dla_core"])
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    lo, opt, hi = options["batch"]
    profile = builder.create_optimization_profile()
    for k in range(network.num_inputs):
        t = network.get_input(k)
        shape = list(t.shape)
        if shape and shape[0] == -1:
            rest = [int(d) for d in shape[1:]]
            if any(d < 0 for d in rest):
                raise PixelrtError(f"{onnx_path.name}: input {t.name} {shape} is dynamic beyond the batch axis; "
                                   "`pixelrt doctor BUNDLE --target tensorrt` explains")
            profile.set_shape(t.name, [lo, *rest], [opt, *rest], [hi, *rest])
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        tail = " | ".join(logger.messages[-5:])
        hint = " (out of memory while building: lower --workspace-mib or --max-batch)" if "memory" in tail.lower() else ""
        raise PixelrtError(f"TensorRT could not build {onnx_path.name}{hint}: {tail[:600]}")
    return bytes(plan)


class TrtEngine:
    """A deserialized engine + one execution context + a stream; named I/O metadata."""

    def __init__(self, onnx_path: str | Path, profile: BuildProfile, graph: str, cache: EngineCache | None = None,
                 log=print):
        self.trt = trt = import_tensorrt()
        self.rt, _, _ = modules()
        self.path = Path(onnx_path)
        self.options = profile.options(graph)
        device = current_device()
        cache = cache or EngineCache(device, log=log)
        data = cache.get_or_build(onnx_path, self.options, lambda p, o: build_serialized(p, o, {}, log))
        self.logger = make_logger(trt)  # TensorRT keeps a pointer to it: it must outlive the runtime
        self.runtime = trt.Runtime(self.logger)
        if self.options.get("dla_core") is not None:
            self.runtime.DLA_core = int(self.options["dla_core"])
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise PixelrtError(f"TensorRT could not load the cached engine of {self.path.name}; delete "
                               f"{cache.root} entries for it and run again")
        self.context = self.engine.create_execution_context()
        self.stream = check(self.rt.cudaStreamCreate(), "cudaStreamCreate")
        self.inputs, self.outputs = {}, {}
        for k in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(k)
            meta = (np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))),
                    tuple(None if d < 0 else int(d) for d in self.engine.get_tensor_shape(name)))
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            if is_input and getattr(self.engine, "is_shape_inference_io", lambda n: False)(name):
                raise PixelrtError(f"{self.path.name}: TensorRT made input {name!r} a host-side shape tensor; pixelrt "
                                   "feeds device buffers (and replays CUDA graphs); run `pixelrt doctor BUNDLE "
                                   "--target tensorrt` and export that value from shapes or constants")
            (self.inputs if is_input else self.outputs)[name] = meta
        self.batch_range = tuple(self.options["batch"])

    def set_batch(self, batch: int, shapes: dict[str, tuple]) -> dict[str, tuple]:
        """Set every input's shape; returns the resolved output shapes."""
        lo, _, hi = self.batch_range
        if not lo <= batch <= hi:
            raise PixelrtError(f"batch {batch} is outside the engine's optimization profile {lo}..{hi}; "
                               "rebuild with `pixelrt build-engine BUNDLE --max-batch N` or use a smaller --batch-size")
        for name, shape in shapes.items():
            if not self.context.set_input_shape(name, tuple(int(d) for d in shape)):
                raise PixelrtError(f"TensorRT rejected shape {tuple(shape)} for input {name!r} of {self.path.name}")
        return {name: tuple(self.context.get_tensor_shape(name)) for name in self.outputs}

    def bind(self, name: str, ptr: int) -> None:
        if not self.context.set_tensor_address(name, int(ptr)):
            raise PixelrtError(f"TensorRT rejected the device address of {name!r} ({self.path.name})")

    def enqueue(self, stream=None) -> None:
        """execute_async_v3 on this engine's stream, or on ``stream`` (the device loop runs its step and
        row engines on one stream, so their order needs no events)."""
        if not self.context.execute_async_v3(int(self.stream if stream is None else stream)):
            raise PixelrtError(f"TensorRT execute_async_v3 failed on {self.path.name}")

    def close(self) -> None:
        if self.stream is not None:
            self.rt.cudaStreamDestroy(self.stream)
            self.stream = None
        self.context = self.engine = self.runtime = None


class TrtBackend(Backend):
    """Host arrays in, host arrays out; device buffers grow to the largest batch seen."""

    name = "trt"

    def __init__(self, path: str | Path, profile: str | BuildProfile = "server", graph: str | None = None,
                 cache: EngineCache | None = None, log=print):
        super().__init__(path)
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.graph = graph or Path(path).stem
        self.cache, self.log = cache, log
        self.engine: TrtEngine | None = None
        self.buffers: dict[str, DeviceBuffer] = {}

    def _activate(self) -> None:
        self.engine = TrtEngine(self.path, self.profile, self.graph, self.cache, self.log)
        self.inputs = dict(self.engine.inputs)
        self.output_names = list(self.engine.outputs)

    def _buffer(self, name: str, shape: tuple, dtype) -> DeviceBuffer:
        buf = self.buffers.get(name)
        need = max(1, int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
        if buf is None or buf.nbytes < need:
            if buf is not None:
                buf.free()
            buf = self.buffers[name] = DeviceBuffer(self.engine.rt, shape, dtype)
        return buf

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        e = self.engine
        batch = next((len(v) for k, v in feeds.items() if self.inputs[k][1] and self.inputs[k][1][0] is None), 1)
        out_shapes = e.set_batch(batch, {k: v.shape for k, v in feeds.items()})
        for name, arr in feeds.items():
            buf = self._buffer(name, arr.shape, arr.dtype)
            buf.upload(arr, e.stream)
            e.bind(name, buf.ptr)
        outs = {}
        for name, shape in out_shapes.items():
            outs[name] = self._buffer(name, shape, e.outputs[name][0])
            e.bind(name, outs[name].ptr)
        e.enqueue()
        return {name: buf.download(e.stream, out_shapes[name]) for name, buf in outs.items()}

    def _deactivate(self) -> None:
        for buf in self.buffers.values():
            buf.free()
        self.buffers.clear()
        if self.engine is not None:
            self.engine.close()
            self.engine = None


class TrtStepBackend(TrtBackend):
    """TrtBackend on a step graph that also runs the whole loop on the device (``bundle_loop``).

    ``pixelrt sample/parity --runtime trt`` reach it through :func:`pixelrt.runtime.sampler.bundle_loop`,
    which hands the loop to a backend that offers one. A bundle with a per-row graph runs it on the
    device too: :func:`pixelrt.runtime.backends.step_backends` attaches the row graph's backend as
    ``row_backend`` (and yields no separate row runner, so the whole loop comes here).
    """

    def __init__(self, path, profile="server", cuda_graph: bool = True, **kwargs):
        super().__init__(path, profile, graph="step", **kwargs)
        self.cuda_graph = cuda_graph

    row_backend = None  # the per-row graph's TrtBackend (set by step_backends for bundles that have one)

    def bundle_loop(self, bundle, noise, row=None, **kwargs):
        from pixelrt.runtime.trt_device import CudaDevice, check_engine_io, check_row_engine_io
        from pixelrt.runtime.trt_loop import device_loop

        if not self.active:
            raise RuntimeError("activate the TensorRT backend before sampling")
        check_engine_io(self.engine)
        kwargs.pop("row_runner", None)
        row = row or self.row_backend
        row_engine = None
        if any(s.update == "row" for s in bundle.state):
            if not isinstance(row, TrtBackend) or not row.active:
                raise PixelrtError(f"this bundle has a per-row graph ({bundle.step_schedule.row_graph!r}); the TensorRT "
                                   "device loop needs it as an active `trt` backend too: open both with "
                                   "pixelrt.runtime.backends.step_backends('trt', bundle)")
            row_engine = row.engine
            check_row_engine_io(row_engine)
        device = CudaDevice(self.engine, cuda_graph=self.cuda_graph, log=self.log, row_engine=row_engine)
        try:
            return device_loop(device, bundle.image, bundle.state, noise, schedule=bundle.step_schedule, **kwargs)
        finally:
            device.close()
