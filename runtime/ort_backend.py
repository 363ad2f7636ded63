"""ONNX Runtime backend: CPU, the CUDA execution provider, or the TensorRT execution provider.

On ``cuda``/``tensorrt`` every call goes through IOBinding: inputs are OrtValues on the device,
outputs are bound to device OrtValues and copied back once. With ``cuda_graph=True`` (CUDA EP's
``enable_cuda_graph``) the OrtValues are allocated once per shape and updated in place, because a
replayed CUDA graph reads fixed addresses; ORT captures the graph on the first run.
The TensorRT EP keeps its engines in an on-disk cache and takes precision from the graph (no FP16/INT8
switches: those come from `pixelrt calibrate`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from pixelrt.errors import PixelrtError
from pixelrt.runtime.backend import ONNX_TO_NUMPY, Backend
from pixelrt.runtime.graph_check import open_session

PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
             "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}
GPU_INSTALL = ("`pip install pixelrt[gpu]` (onnxruntime-gpu; uninstall the CPU `onnxruntime` first) on a CUDA machine; "
               "on a Jetson install onnxruntime-gpu from the Jetson index, see docs/jetson.md")


def trt_ep_options(cache_dir: str, workspace_mib: int = 2048, optimization_level: int = 3) -> dict:
    """TensorRT EP provider options: engine + timing cache on disk, precision from the graph."""
    return {"trt_engine_cache_enable": True, "trt_engine_cache_path": cache_dir, "trt_timing_cache_enable": True,
            "trt_timing_cache_path": cache_dir, "trt_max_workspace_size": workspace_mib << 20,
            "trt_builder_optimization_level": optimization_level, "trt_fp16_enable": False, "trt_int8_enable": False}


class OrtBackend(Backend):
    name = "ort"

    def __init__(self, path: str | Path, device: str = "cpu", threads: int = 0, cuda_graph: bool = False,
                 trt_cache: str | None = None):
        super().__init__(path)
        if device not in PROVIDERS:
            raise PixelrtError(f"unknown ONNX Runtime device {device!r}; choose one of {', '.join(PROVIDERS)}")
        if device != "cpu" and PROVIDERS[device][0] not in ort.get_available_providers():
            raise PixelrtError(f"ONNX Runtime's {PROVIDERS[device][0]} is not available in this install "
                               f"(it has: {', '.join(ort.get_available_providers())}); {GPU_INSTALL}")
        self.device, self.threads, self.cuda_graph, self.trt_cache = device, threads, cuda_graph, trt_cache
        self.session: ort.InferenceSession | None = None
        self._bound: dict = {}
        self.io_device = "cuda"  # where bound OrtValues live (tests run the binding logic with "cpu")

    def _providers(self) -> list:
        if self.device == "cuda":
            return [("CUDAExecutionProvider", {"enable_cuda_graph": "1" if self.cuda_graph else "0"}),
                    "CPUExecutionProvider"]
        if self.device == "tensorrt":
            from pixelrt.runtime.engine_cache import default_cache_root

            cache = str(Path(self.trt_cache) if self.trt_cache else default_cache_root() / "ort-trt")
            Path(cache).mkdir(parents=True, exist_ok=True)
            return [("TensorrtExecutionProvider", trt_ep_options(cache)), "CUDAExecutionProvider",
                    "CPUExecutionProvider"]
        return PROVIDERS[self.device]

    def _activate(self) -> None:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if self.threads:
            opts.intra_op_num_threads = self.threads
        self.session = open_session(self.graph, opts, self._providers())
        self.inputs = {
            i.name: (np.dtype(ONNX_TO_NUMPY[i.type]), tuple(d if isinstance(d, int) else None for d in i.shape))
            for i in self.session.get_inputs()
        }
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.device == "cpu":
            return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))
        return self._infer_bound(feeds)

    def bind(self, inputs: dict[str, np.ndarray], batch: int, pixels: int | None = None):
        """CPU hot loops: bind ``inputs`` and preallocated outputs once, so that no array is allocated per
        call. ``inputs`` are contiguous numpy arrays the caller keeps and updates in place (ORT reads their
        memory, it does not copy them). Returns ``(run, outputs)``: ``run()`` executes the graph and leaves
        every output in ``outputs[name]``, overwritten by the next call. None where that does not apply
        (a GPU device, or an output whose shape is not the batch and fixed sizes). ``pixels``: the size of a
        wavefront graph's second dynamic axis (its pixels in flight) for this binding."""
        if self.device != "cpu":
            return None
        self.check(inputs)
        outs = self.session.get_outputs()
        if any(not o.shape for o in outs):
            return None
        # the batch axis is the one named so (a batch-last wavefront's new columns), else the first
        at = [o.shape.index("batch") if "batch" in o.shape else 0 for o in outs]
        dims = [[batch if k == a else d if isinstance(d, int) else pixels for k, d in enumerate(o.shape)]
                for o, a in zip(outs, at)]
        if any(d is None for ds in dims for d in ds):
            return None
        binding = self.session.io_binding()
        for k, v in inputs.items():
            binding.bind_cpu_input(k, v)
        outputs = {o.name: np.empty(ds, ONNX_TO_NUMPY[o.type]) for o, ds in zip(outs, dims)}
        for name, arr in outputs.items():
            binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(arr))
        session, keep = self.session, (inputs, outputs)  # the binding reads this memory: keep it alive

        def run() -> dict[str, np.ndarray]:
            session.run_with_iobinding(binding)
            return keep[1]

        return run, outputs

    def _infer_bound(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """IOBinding with device OrtValues; with a CUDA graph the same OrtValues are refilled in place."""
        shapes = {k: v.shape for k, v in feeds.items()}
        if not self.cuda_graph or self._bound.get("shapes") != shapes:
            if self.cuda_graph and self._bound:  # a captured graph is tied to its shapes and addresses
                self._activate()
            binding = self.session.io_binding()
            # own copies: a CPU OrtValue would wrap (and update_inplace would overwrite) the caller's array
            values = {k: ort.OrtValue.ortvalue_from_numpy(np.array(v, copy=True, order="C"), self.io_device, 0)
                      for k, v in feeds.items()}
            for k, v in values.items():
                binding.bind_ortvalue_input(k, v)
            if self.cuda_graph:  # a replayed graph writes to fixed addresses: pre-allocate the outputs
                batch = next((v.shape[0] for k, v in feeds.items() if self.inputs[k][1] and self.inputs[k][1][0] is None), 1)
                for o in self.session.get_outputs():
                    shape = [d if isinstance(d, int) else batch for d in o.shape]
                    out = ort.OrtValue.ortvalue_from_shape_and_type(shape, ONNX_TO_NUMPY[o.type], self.io_device, 0)
                    binding.bind_ortvalue_output(o.name, out)
            else:
                for name in self.output_names:
                    binding.bind_output(name, self.io_device, 0)
            self._bound = {"shapes": shapes, "binding": binding, "values": values}
        else:
            for k, v in feeds.items():
                self._bound["values"][k].update_inplace(np.ascontiguousarray(v))
        binding = self._bound["binding"]
        try:
            self.session.run_with_iobinding(binding)
        except Exception as e:  # noqa: BLE001 - ORT raises its own types; most likely a graph it cannot capture
            hint = " (CUDA graphs need every node on the CUDA provider: use --runtime ort-cuda)" if self.cuda_graph else ""
            raise PixelrtError(f"{self.path.name}: ONNX Runtime ({self.device}) failed: {str(e)[:200]}{hint}") from None
        return dict(zip(self.output_names, binding.copy_outputs_to_cpu()))

    def _deactivate(self) -> None:
        self.session = None
        self._bound = {}
