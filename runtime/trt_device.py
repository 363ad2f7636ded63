"""The device loop's plan executed on a GPU: TensorRT engine + NVRTC kernels + CUDA graphs.

See :mod:`pixelrt.runtime.trt_loop` for the design; :class:`HostDevice` there is this class's
numpy twin and is what the CPU tests check. Per batch: allocate the plan's buffers, upload the
tables once, warm up and capture one CUDA graph per ping-pong parity (pre_step -> execute_async_v3
-> commit_ring per ring state -> post_step -> advance), re-zero what the warm-up touched, then
replay the graphs back to back. The host synchronises at the end of the batch, or once per row
when a progress bar is shown. ``cuda_graph=False`` launches the same work without capture (for
engines TensorRT cannot capture, and for debugging).
"""
from __future__ import annotations

import ctypes

import numpy as np

from pixelrt.errors import PixelrtError
from pixelrt.runtime.cuda_runtime import DeviceBuffer, Kernels, check
from pixelrt.runtime.trt_loop import KERNELS, BufferPlan, StepTables

BLOCK = 128


class CudaDevice:
    def __init__(self, engine, cuda_graph: bool = True, log=print):
        self.e, self.rt, self.log = engine, engine.rt, log
        self.kernels = Kernels(KERNELS, ["pre_step", "commit_ring", "post_step", "advance"])
        self.step_inputs = dict(engine.inputs)
        self.step_outputs = dict(engine.outputs)
        self.cuda_graph = cuda_graph
        self.bufs: dict[str, DeviceBuffer] = {}
        self.graphs: dict[int, object] = {}
        self.bound = None

    # -- per batch -----------------------------------------------------------------------------
    def prepare(self, plan: BufferPlan, tables: StepTables, context: dict, image, schedule) -> None:
        self._release()
        self.plan, self.schedule, self.image = plan, schedule, image
        B = tables.force.shape[1] // schedule.channels_per_substep(image.channels)
        self.B = B
        stream = self.e.stream
        self.e.set_batch(B, {n: plan.buffers[plan.bind[0][n]][0] for n in plan.inputs})
        for key, (shape, dtype) in plan.buffers.items():
            self.bufs[key] = DeviceBuffer(self.rt, shape, dtype)
        self._zero_state()
        self.bufs["tab:positions"].upload(tables.positions, stream)
        self.bufs["tab:noise"].upload(tables.noise, stream)
        self.bufs["tab:force"].upload(tables.force, stream)
        for k, v in context.items():
            self.bufs[f"ctx:{k}"].upload(v, stream)
        parities = sorted(set(int(p) for p in np.unique(tables.parity)))
        if self.cuda_graph:
            try:
                for p in parities:
                    self.graphs[p] = self._capture(p)
            except PixelrtError as err:
                self.log(f"trt loop: CUDA graph capture failed ({err}); launching each step directly instead")
                self.graphs.clear()
                check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
            self._zero_state()  # warm-up enqueues wrote outputs and ping-pong buffers

    def _zero_state(self) -> None:
        for key, buf in self.bufs.items():
            if key.startswith(("state:", "in:", "out:", "cursor", "tab:value", "tab:logp")):
                buf.zero(self.e.stream)
        check(self.rt.cudaStreamSynchronize(self.e.stream), "cudaStreamSynchronize")

    def _bind(self, parity: int) -> None:
        if self.bound == parity:
            return
        for name, key in self.plan.bind[parity].items():
            self.e.bind(name, self.bufs[key].ptr)
        self.bound = parity

    def _launch_step(self, parity: int) -> None:
        """pre_step -> TensorRT -> commit_ring (each ring state) -> post_step -> advance, on the stream."""
        b, bind, stream = self.bufs, self.plan.bind[parity], self.e.stream
        P, I = ctypes.c_void_p, ctypes.c_int
        cps = self.schedule.channels_per_substep(self.image.channels)
        S = self.schedule.substeps_per_pixel
        noise_n = self.B * self.schedule.noise_per_substep
        force_n = self.B * cps
        grid = lambda n: max(1, (n + BLOCK - 1) // BLOCK)  # noqa: E731
        self.kernels.launch("pre_step", grid(max(noise_n, force_n)), BLOCK, [
            (b["cursor"].ptr, P), (b["tab:positions"].ptr, P), (b["tab:noise"].ptr, P), (b["tab:force"].ptr, P),
            (b["in:noise"].ptr, P), (b["in:force"].ptr, P), (b["in:row"].ptr, P), (b["in:col"].ptr, P),
            (b["in:channel"].ptr, P), (noise_n, I), (force_n, I)], stream)
        self.e.enqueue()
        for st in self.plan.ring:
            _, L, rows, wp, c = (int(d) if isinstance(d, int) else self.B for d in st.shape)
            n = self.B * L * c
            self.kernels.launch("commit_ring", grid(n), BLOCK, [
                (b["cursor"].ptr, P), (b["tab:positions"].ptr, P), (b[bind[st.source]].ptr, P),
                (b[bind[st.name]].ptr, P), (n, I), (rows, I), (wp, I), (c, I), (st.pad, I), (S - 1, I)], stream)
        channels = self.image.channels
        self.kernels.launch("post_step", grid(max(force_n, self.B * channels)), BLOCK, [
            (b["cursor"].ptr, P), (b["tab:positions"].ptr, P), (b[bind["value"]].ptr, P), (b[bind["logp"]].ptr, P),
            (b["tab:value"].ptr, P), (b["tab:logp"].ptr, P), (b["in:pixel"].ptr, P), (self.B, I), (channels, I),
            (cps, I), (S - 1, I)], stream)
        self.kernels.launch("advance", 1, 1, [(b["cursor"].ptr, P)], stream)

    def _capture(self, parity: int):
        rt, stream = self.rt, self.e.stream
        self.bound = None
        self._bind(parity)
        self.e.enqueue()  # TensorRT asks for one enqueue before capture (lazy allocations happen there)
        check(rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        check(rt.cudaStreamBeginCapture(stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
              "cudaStreamBeginCapture")
        try:
            self._launch_step(parity)
        finally:
            graph = check(rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        return check(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")

    def run(self, t0: int, t1: int, parity: np.ndarray) -> None:
        stream = self.e.stream
        for t in range(t0, t1):
            p = int(parity[t])
            if self.graphs:
                check(self.rt.cudaGraphLaunch(self.graphs[p], stream), "cudaGraphLaunch")
            else:
                self._bind(p)
                self._launch_step(p)

    def sync(self) -> None:
        check(self.rt.cudaStreamSynchronize(self.e.stream), "cudaStreamSynchronize")

    def results(self) -> tuple[np.ndarray, np.ndarray]:
        stream = self.e.stream
        return self.bufs["tab:value"].download(stream), self.bufs["tab:logp"].download(stream)

    def _release(self) -> None:
        for g in self.graphs.values():
            self.rt.cudaGraphExecDestroy(g)
        self.graphs.clear()
        for buf in self.bufs.values():
            buf.free()
        self.bufs.clear()
        self.bound = None

    def close(self) -> None:
        self._release()


def check_engine_io(engine) -> None:
    """The loop drives step graphs with pixelrt's I/O; anything else is a bundle problem."""
    if "value" not in engine.outputs or "logp" not in engine.outputs:
        raise PixelrtError(f"{engine.path.name} is not a step graph (no value/logp outputs)")
    want = {"value": np.int64, "logp": np.float32, "pixel": np.int64, "row": np.int64, "col": np.int64,
            "channel": np.int64, "force": np.int64, "noise": np.float32}
    io = {**engine.inputs, **engine.outputs}
    wrong = [f"{n} is {io[n][0]}" for n, dt in want.items() if n in io and io[n][0] != np.dtype(dt)]
    if wrong:
        raise PixelrtError(f"{engine.path.name}: the device loop's kernels expect pixelrt's step I/O types, but "
                           f"{', '.join(wrong)}; re-run `pixelrt export`")
