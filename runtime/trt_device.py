"""The device loop's plan executed on a GPU: TensorRT engines + NVRTC kernels + CUDA graphs.

See :mod:`pixelrt.runtime.trt_loop` for the design; :class:`pixelrt.runtime.trt_host.HostDevice` is
this class's numpy twin and is what the CPU tests check. Per batch: allocate the plan's buffers,
upload the tables once, warm up and capture one CUDA graph per ping-pong parity (pre_step ->
execute_async_v3 -> commit_ring per ring state -> post_step -> advance) and, for a bundle with a
per-row graph, one per row parity (gather_row -> the row engine's execute_async_v3 -> one
device-to-device copy per row state), re-zero what the warm-ups touched, then replay the graphs
back to back on one stream. The host synchronises at the end of the batch, or once per row when a
progress bar is shown. ``cuda_graph=False`` launches the same work without capture (for engines
TensorRT cannot capture, and for debugging).
"""
from __future__ import annotations

import ctypes

import numpy as np

from pixelrt.errors import PixelrtError
from pixelrt.runtime.cuda_runtime import DeviceBuffer, Kernels, check
from pixelrt.runtime.trt_kernels import KERNEL_NAMES, KERNELS
from pixelrt.runtime.trt_loop import BufferPlan, StepTables

BLOCK = 128


class CudaDevice:
    def __init__(self, engine, cuda_graph: bool = True, log=print, row_engine=None):
        self.e, self.rt, self.log = engine, engine.rt, log
        self.kernels = Kernels(KERNELS, KERNEL_NAMES)
        self.step_inputs = dict(engine.inputs)
        self.step_outputs = dict(engine.outputs)
        self.row = row_engine  # the per-row graph's TrtEngine (bundles with `row` states), on our stream
        if row_engine is not None:
            self.row_inputs, self.row_outputs = dict(row_engine.inputs), dict(row_engine.outputs)
        self.cuda_graph = cuda_graph
        self.bufs: dict[str, DeviceBuffer] = {}
        self.graphs: dict[int, object] = {}
        self.row_graphs: dict[int, object] = {}
        self.bound = self.row_bound = None

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
            if f"ctx:{k}" in self.bufs:  # a context input neither graph reads has no buffer
                self.bufs[f"ctx:{k}"].upload(v, stream)
        if plan.row_bind:
            self.row.set_batch(B, {n: plan.buffers[plan.row_bind[0][n]][0] for n in plan.row_inputs})
        parities = sorted(set(int(p) for p in np.unique(tables.parity)))
        row_parities = sorted(set(int(p) for p in np.unique(tables.row_parity))) if plan.row_bind else []
        if self.cuda_graph:
            try:
                for p in parities:
                    self.graphs[p] = self._capture(p, self._launch_step, self.e)
                for p in row_parities:
                    self.row_graphs[p] = self._capture(p, self._launch_row, self.row)
            except PixelrtError as err:
                self.log(f"trt loop: CUDA graph capture failed ({err}); launching each step directly instead")
                self._destroy_graphs()
                check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
            self._zero_state()  # warm-up enqueues wrote outputs and ping-pong buffers

    def _zero_state(self) -> None:
        for key, buf in self.bufs.items():
            if key.startswith(("state:", "in:", "out:", "rowin:", "rowout:", "cursor", "tab:value", "tab:logp")):
                buf.zero(self.e.stream)
        check(self.rt.cudaStreamSynchronize(self.e.stream), "cudaStreamSynchronize")

    def _bind(self, parity: int) -> None:
        if self.bound == parity:
            return
        for name, key in self.plan.bind[parity].items():
            self.e.bind(name, self.bufs[key].ptr)
        self.bound = parity

    def _bind_row(self, parity: int) -> None:
        if self.row_bound == parity:
            return
        for name, key in self.plan.row_bind[parity].items():
            self.row.bind(name, self.bufs[key].ptr)
        self.row_bound = parity

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
        for st in self.plan.ring:  # ring-row (stride 1) and strided-ring-row
            _, L, rows, wp, c = (int(d) if isinstance(d, int) else self.B for d in st.shape)
            n = self.B * L * c
            self.kernels.launch("commit_ring", grid(n), BLOCK, [
                (b["cursor"].ptr, P), (b["tab:positions"].ptr, P), (b[bind[st.source]].ptr, P),
                (b[bind[st.name]].ptr, P), (n, I), (rows, I), (wp, I), (c, I), (st.pad, I), (S - 1, I),
                (st.stride, I)], stream)
        channels = self.image.channels
        self.kernels.launch("post_step", grid(max(force_n, self.B * channels)), BLOCK, [
            (b["cursor"].ptr, P), (b["tab:positions"].ptr, P), (b[bind["value"]].ptr, P), (b[bind["logp"]].ptr, P),
            (b["tab:value"].ptr, P), (b["tab:logp"].ptr, P), (b["in:pixel"].ptr, P), (self.B, I), (channels, I),
            (cps, I), (S - 1, I)], stream)
        self.kernels.launch("advance", 1, 1, [(b["cursor"].ptr, P)], stream)

    def _launch_row(self, parity: int) -> None:
        """gather_row -> the row engine -> each row state replaced by its output (device-to-device)."""
        b, stream = self.bufs, self.e.stream
        P, I = ctypes.c_void_p, ctypes.c_int
        C, W = self.image.channels, self.image.width
        S = self.schedule.substeps_per_pixel
        n = self.B * C * W
        self.kernels.launch("gather_row", max(1, (n + BLOCK - 1) // BLOCK), BLOCK, [
            (b["cursor"].ptr, P), (b["tab:positions"].ptr, P), (b["tab:value"].ptr, P),
            (b["rowin:row_pixels"].ptr, P), (b["rowin:row"].ptr, P), (self.B, I), (C, I),
            (self.schedule.channels_per_substep(C), I), (W, I), (S, I)], stream)
        self._bind_row(parity)
        self.row.enqueue(stream)
        d2d = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        for src, dst in self.plan.row_copies:
            check(self.rt.cudaMemcpyAsync(b[dst].ptr, b[src].ptr, b[dst].nbytes, d2d, stream), "cudaMemcpyAsync D2D")

    def _capture(self, parity: int, launch, engine):
        """One CUDA graph of ``launch(parity)`` (the step or the row step) on the loop's stream."""
        rt, stream = self.rt, self.e.stream
        self.bound = self.row_bound = None
        if engine is self.e:
            self._bind(parity)
        else:
            self._bind_row(parity)
        engine.enqueue(stream)  # TensorRT asks for one enqueue before capture (lazy allocations happen there)
        check(rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        check(rt.cudaStreamBeginCapture(stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
              "cudaStreamBeginCapture")
        try:
            launch(parity)
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

    def run_row(self, parity: int) -> None:
        if self.row_graphs:
            check(self.rt.cudaGraphLaunch(self.row_graphs[parity], self.e.stream), "cudaGraphLaunch")
        else:
            self._launch_row(parity)

    def sync(self) -> None:
        check(self.rt.cudaStreamSynchronize(self.e.stream), "cudaStreamSynchronize")

    def results(self) -> tuple[np.ndarray, np.ndarray]:
        stream = self.e.stream
        return self.bufs["tab:value"].download(stream), self.bufs["tab:logp"].download(stream)

    def _destroy_graphs(self) -> None:
        for g in (*self.graphs.values(), *self.row_graphs.values()):
            self.rt.cudaGraphExecDestroy(g)
        self.graphs.clear()
        self.row_graphs.clear()

    def _release(self) -> None:
        self._destroy_graphs()
        for buf in self.bufs.values():
            buf.free()
        self.bufs.clear()
        self.bound = self.row_bound = None

    def close(self) -> None:
        self._release()


def check_row_engine_io(engine) -> None:
    """The per-row graph takes the finished row as int64 (batch, C, W) and ``row`` as an int64 scalar."""
    io = engine.inputs
    wrong = [f"{n} is {io[n][0]}" for n in ("row_pixels", "row") if n in io and io[n][0] != np.dtype(np.int64)]
    if wrong:
        raise PixelrtError(f"{engine.path.name}: the device loop feeds int64 row_pixels/row, but {', '.join(wrong)}; "
                           "re-run `pixelrt export`")


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
