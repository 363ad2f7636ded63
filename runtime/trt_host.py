"""The device loop's exact semantics in numpy: :class:`HostDevice`, the CUDA kernels' twin.

Any backend (``infer``) stands in for the TensorRT engines. Each method mirrors one kernel of
:data:`pixelrt.runtime.trt_kernels.KERNELS` with the same flat-index arithmetic, so the CPU tests
that compare ``device_loop(HostDevice(...))`` with ``step_loop`` bit for bit prove the plan, the
tables and the kernels' bookkeeping (ring, strided and replace commits, the per-row gather, the
row-state copies) without a GPU.
"""
from __future__ import annotations

import numpy as np

from pixelrt.errors import PixelrtError
from pixelrt.bundle import ImageSpec, StateSpec
from pixelrt.runtime.trt_loop import BufferPlan, StepTables

ORT_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
             "tensor(float16)": np.float16, "tensor(bool)": np.bool_}


def output_specs(runner) -> tuple[dict, bool]:
    """(name -> (dtype, shape with None for symbolic axes), exact): from the runner's ONNX Runtime
    session when it has one (exact: the buffers are sized as on the GPU and every output must fit
    its buffer), else placeholders for hand-written fake graphs."""
    declared = getattr(runner, "outputs", None)  # a fake graph that declares its outputs
    if isinstance(declared, dict):
        return {k: (np.dtype(dt), tuple(shape)) for k, (dt, shape) in declared.items()}, True
    session = getattr(runner, "session", None)
    if session is None:
        return {name: (np.dtype(np.float32), ()) for name in runner.output_names}, False
    return {o.name: (np.dtype(ORT_TYPES.get(o.type, np.float32)),
                     tuple(d if isinstance(d, int) else None for d in o.shape)) for o in session.get_outputs()}, True


class HostDevice:
    """``device_loop``'s device, in numpy. runner: the step graph; row_runner: the per-row graph (or None)."""

    def __init__(self, runner, row_runner=None):
        self.runner, self.row_runner = runner, row_runner
        self.step_inputs = dict(runner.inputs)
        self.step_outputs, self.exact = output_specs(runner)
        if row_runner is not None:
            self.row_inputs = dict(row_runner.inputs)
            self.row_outputs, exact = output_specs(row_runner)
            self.exact = self.exact and exact

    def prepare(self, plan: BufferPlan, tables: StepTables, context: dict, image: ImageSpec, schedule) -> None:
        self.plan, self.image, self.schedule = plan, image, schedule
        self.mem = {k: np.zeros(shape, dtype) for k, (shape, dtype) in plan.buffers.items()}
        self.mem.update({"tab:positions": tables.positions, "tab:noise": tables.noise, "tab:force": tables.force})
        for k, v in context.items():
            if f"ctx:{k}" in self.mem:  # a context input neither graph reads has no buffer
                self._store(f"ctx:{k}", v)
        self.B = len(tables.noise[0]) // schedule.noise_per_substep

    def _store(self, key: str, value: np.ndarray) -> None:
        """What an engine or an upload does: write into the planned buffer, which must fit exactly."""
        buf = self.mem[key]
        value = np.asarray(value)
        if buf.shape == value.shape and buf.dtype == value.dtype:
            buf[...] = value
        elif self.exact or key.startswith(("state:", "ctx:")):
            raise PixelrtError(f"internal: {key} is planned as {buf.dtype} {buf.shape}, the graph gives "
                               f"{value.dtype} {value.shape}")
        else:  # a fake graph's placeholder spec
            self.mem[key] = np.ascontiguousarray(value)

    def run(self, t0: int, t1: int, parity: np.ndarray) -> None:
        for t in range(t0, t1):
            self._pre()
            bind = self.plan.bind[int(parity[t])]
            out = self.runner.infer({n: self.mem[bind[n]] for n in self.plan.inputs}, check=t == 0)
            for n in self.plan.outputs:  # the engine writes into its bound output buffers
                self._store(bind[n], out[n])
            for st in self.plan.ring:
                self._commit_ring(st, bind)
            self._post(bind)
            self.mem["cursor"][0] += 1  # advance

    def run_row(self, parity: int) -> None:
        """gather_row -> the row graph -> one copy per row state (the CUDA graph of the row step)."""
        self._gather_row()
        bind = self.plan.row_bind[parity]
        first = int(self.mem["rowin:row"]) == 0
        out = self.row_runner.infer({n: self.mem[bind[n]] for n in self.plan.row_inputs}, check=first)
        for n in self.plan.row_outputs:
            self._store(bind[n], out[n])
        for src, dst in self.plan.row_copies:  # cudaMemcpyAsync device-to-device
            self.mem[dst][...] = self.mem[src]

    def _pre(self) -> None:
        t, m = int(self.mem["cursor"][0]), self.mem
        i, j, s = m["tab:positions"][t]
        m["in:row"], m["in:col"], m["in:channel"] = (np.array(v, dtype=np.int64) for v in (i, j, s))
        m["in:noise"] = m["tab:noise"][t].reshape(m["in:noise"].shape)
        m["in:force"] = m["tab:force"][t].reshape(m["in:force"].shape)

    def _commit_ring(self, st: StateSpec, bind: dict) -> None:
        """commit_ring: flat indices as in the kernel, stride 1 for ring-row."""
        m = self.mem
        i, j, s = (int(v) for v in m["tab:positions"][int(m["cursor"][0])])
        if s != self.schedule.substeps_per_pixel - 1 or i % st.stride or j % st.stride:
            return
        dst, src = m[bind[st.name]], m[bind[st.source]].ravel()
        _, L, rows, wp, c = dst.shape
        k = np.arange(src.size)
        slot, col = (i // st.stride + st.pad) % rows, j // st.stride + st.pad
        bl, ch = k // c, k % c
        dst.reshape(-1)[((bl * rows + slot) * wp + col) * c + ch] = src[k]

    def _post(self, bind: dict) -> None:
        m, S = self.mem, self.schedule.substeps_per_pixel
        t = int(m["cursor"][0])
        s = int(m["tab:positions"][t][2])
        value = m[bind["value"]].reshape(self.B, -1)
        cps = value.shape[1]
        m["tab:value"][t] = value.ravel()
        m["tab:logp"][t] = m[bind["logp"]].ravel()
        if s == S - 1:
            m["in:pixel"][...] = 0
        else:
            m["in:pixel"][:, s * cps:(s + 1) * cps] = value

    def _gather_row(self) -> None:
        """gather_row: row_pixels (B, C, W) from the value table at the cursor, and row = i."""
        m, S = self.mem, self.schedule.substeps_per_pixel
        C, W, b = self.image.channels, self.image.width, self.B
        cps = C // S
        t0 = int(m["cursor"][0]) - W * S
        m["rowin:row"] = np.array(m["tab:positions"][t0][0], dtype=np.int64)
        k = np.arange(b * C * W)
        j, ch, bb = k % W, (k // W) % C, k // (W * C)
        s, cc = ch // cps, ch % cps
        m["rowin:row_pixels"].reshape(-1)[k] = m["tab:value"].reshape(-1)[(t0 + j * S + s) * b * cps + bb * cps + cc]

    def sync(self) -> None:
        pass

    def results(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mem["tab:value"], self.mem["tab:logp"]
