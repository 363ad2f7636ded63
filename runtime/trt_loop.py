"""The step loop with its state resident on the device: TensorRT + CUDA graphs, synced once per batch.

Same semantics as :func:`pixelrt.runtime.sampler.step_loop` (raster order, S sub-steps per pixel
with K uniforms each, teacher forcing, context inputs, ``ring-row`` and ``replace`` states), laid out
for a GPU:

* **Tables up-front.** Per batch, the host builds step-major tables (:func:`step_tables`): position
  (row, col, sub-step) of every step t, its noise slice and its forced values, uploads them once,
  and never touches the device again until the batch ends (or a row ends, for a progress bar).
* **Fixed addresses, moving cursor.** A CUDA graph replays fixed addresses, so each step's inputs
  live in fixed buffers that a tiny ``pre_step`` kernel fills from the tables at a device-side step
  counter; ``post_step`` stores value/log p into the result tables, maintains the current pixel, and
  ``commit_ring`` writes each ring-row state's new column in place after a pixel's last sub-step;
  ``advance`` bumps the counter. pre -> TensorRT -> commits -> post -> advance is one captured graph.
* **Ping-pong.** TensorRT gives wrong results when an input and an output share memory, and a
  ``replace`` state is both. It gets two buffers: pixels of even index read #0 and write #1, odd ones
  the reverse (every sub-step of a pixel rewrites the other buffer whole, so the last one wins).
  That is one captured graph per parity. Ring-row states are inputs only (their step outputs are
  separate column buffers), so they need one buffer. :func:`plan_buffers` makes the assignment and
  checks that no call aliases an input with an output.

The plan, the tables and the per-step semantics are plain numpy and run on any machine through
:class:`HostDevice` (an ONNX Runtime session standing in for the engine), which the CPU tests check
against ``step_loop`` exactly. :class:`CudaDevice` executes the same plan on a GPU.
``row`` states (a per-row graph) are not driven on the device yet: they raise a clear error.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pixelrt.data import check_images
from pixelrt.errors import PixelrtError
from pixelrt.runtime.bundle import ImageSpec, StateSpec, StepSchedule
from pixelrt.runtime.sampler import StepResult, _progress, check_context, check_noise

LOOP_INPUTS = ("pixel", "row", "col", "channel", "force", "noise")


# -- tables and plan (numpy, tested on CPU) ---------------------------------------------------
@dataclass
class StepTables:
    positions: np.ndarray  # (T, 3) int64: row, col, sub-step of step t (raster order, sub-steps innermost)
    noise: np.ndarray      # (T, B*K) float32: noise[:, s*K:(s+1)*K, i, j] of step t, batch-major
    force: np.ndarray      # (T, B*cps) int64: forced values of step t's channels, or -1
    parity: np.ndarray     # (T,) int64: ping-pong buffer set of step t (pixel index % 2 with replace states)


def step_tables(image: ImageSpec, schedule: StepSchedule, noise: np.ndarray, force: np.ndarray | None,
                pingpong: bool) -> StepTables:
    """noise (B, S*K, H, W), force (B, C, H, W) or None -> the step-major tables of one batch."""
    B = len(noise)
    C, H, W = image.shape
    S, K = schedule.substeps_per_pixel, schedule.noise_per_substep
    cps = C // S
    i, j, s = np.meshgrid(np.arange(H), np.arange(W), np.arange(S), indexing="ij")
    positions = np.stack([i.ravel(), j.ravel(), s.ravel()], 1).astype(np.int64)
    nz = noise.reshape(B, S, K, H, W).transpose(3, 4, 1, 0, 2).reshape(H * W * S, B * K)
    fc = (np.full((H * W * S, B * cps), -1, dtype=np.int64) if force is None else
          force.reshape(B, S, cps, H, W).transpose(3, 4, 1, 0, 2).reshape(H * W * S, B * cps).astype(np.int64))
    parity = (np.arange(H * W * S) // S) % 2 if pingpong else np.zeros(H * W * S, dtype=np.int64)
    return StepTables(positions, np.ascontiguousarray(nz, dtype=np.float32), np.ascontiguousarray(fc),
                      parity.astype(np.int64))


@dataclass
class BufferPlan:
    """Device buffers (id -> (shape, dtype)) and, per parity, which buffer each step tensor binds."""

    buffers: dict
    bind: list          # [parity 0 {tensor: buffer id}, parity 1 {...}]
    inputs: tuple       # step-graph input names
    outputs: tuple      # step-graph output names
    ring: list          # ring-row StateSpecs (committed by commit_ring)
    replace: list       # replace StateSpecs (ping-pong)

    def check(self) -> None:
        """No call may read and write one buffer (TensorRT's no-aliasing rule)."""
        for parity, bind in enumerate(self.bind):
            ins = {bind[n] for n in self.inputs}
            outs = [bind[n] for n in self.outputs]
            if len(set(outs)) != len(outs) or ins & set(outs):
                raise PixelrtError(f"internal: buffer plan aliases inputs and outputs in parity {parity}: "
                                   f"{sorted(ins & set(outs))}")


def plan_buffers(step_inputs: dict, step_outputs: dict, state: list[StateSpec], batch: int,
                 schedule: StepSchedule, image: ImageSpec) -> BufferPlan:
    """step_inputs/outputs: name -> (numpy dtype, shape with None/str for the batch axis)."""
    if any(s.update == "row" for s in state):
        raise PixelrtError("the device-resident TensorRT loop drives ring-row and replace states; this bundle has "
                           "`row` states (a per-row graph): sample it with --runtime ort or ort-cuda")
    unknown = [s.update for s in state if s.update not in ("ring-row", "replace")]
    if unknown:
        raise PixelrtError(f"the device-resident loop cannot drive state updates {unknown}; use --runtime ort")
    for s in state:
        if np.dtype(s.dtype) != np.float32:
            raise PixelrtError(f"state {s.name} is {s.dtype}; the device loop's kernels commit float32 states")
    shape = lambda spec: tuple(batch if not isinstance(d, int) else d for d in spec[1])  # noqa: E731
    buffers, bind0, bind1 = {}, {}, {}
    by_name = {s.name: s for s in state}
    sources = {s.source: s for s in state}
    for name, spec in step_inputs.items():
        st = by_name.get(name)
        if st is not None and st.update == "replace":
            for k in (0, 1):
                buffers[f"state:{name}#{k}"] = (shape(spec), spec[0])
            bind0[name], bind1[name] = f"state:{name}#0", f"state:{name}#1"
        else:
            kind = "state" if st is not None else "in" if name in LOOP_INPUTS else "ctx"
            buffers[f"{kind}:{name}"] = (shape(spec), spec[0])
            bind0[name] = bind1[name] = f"{kind}:{name}"
    for name, spec in step_outputs.items():
        st = sources.get(name)
        if st is not None and st.update == "replace":
            bind0[name], bind1[name] = f"state:{st.name}#1", f"state:{st.name}#0"
        else:
            buffers[f"out:{name}"] = (shape(spec), spec[0])
            bind0[name] = bind1[name] = f"out:{name}"
    C = image.channels
    cps = schedule.channels_per_substep(C)
    K = schedule.noise_per_substep
    missing = [n for n in ("value", "logp") if n not in step_outputs]
    if missing:
        raise PixelrtError(f"the step graph has no {', '.join(missing)} output; re-run `pixelrt export`")
    scratch = {"pixel": ((batch, C), np.int64), "row": ((), np.int64), "col": ((), np.int64),
               "channel": ((), np.int64), "force": ((batch,) if cps == 1 else (batch, cps), np.int64),
               "noise": ((batch,) if K == 1 else (batch, K), np.float32)}
    for name, (shp, dt) in scratch.items():  # the kernels write every loop input, declared or not
        buffers.setdefault(f"in:{name}", (shp, np.dtype(dt)))
    steps = image.height * image.width * schedule.substeps_per_pixel
    buffers["tab:positions"] = ((steps, 3), np.dtype(np.int64))
    buffers["tab:noise"] = ((steps, batch * schedule.noise_per_substep), np.dtype(np.float32))
    buffers["tab:force"] = ((steps, batch * cps), np.dtype(np.int64))
    buffers["tab:value"] = ((steps, batch * cps), np.dtype(np.int64))
    buffers["tab:logp"] = ((steps, batch * cps), np.dtype(np.float32))
    buffers["cursor"] = ((1,), np.dtype(np.int64))
    plan = BufferPlan(buffers, [bind0, bind1], tuple(step_inputs), tuple(step_outputs),
                      [s for s in state if s.update == "ring-row"], [s for s in state if s.update == "replace"])
    plan.check()
    return plan


# -- the driver ----------------------------------------------------------------------------------
def device_loop(device, image: ImageSpec, state: list[StateSpec], noise: np.ndarray, force: np.ndarray | None = None,
                batch_size: int = 64, progress: bool = False, desc: str = "sampling",
                schedule: StepSchedule | None = None, context: dict | None = None) -> StepResult:
    """``step_loop`` on a device (HostDevice or CudaDevice): same arguments, same result."""
    schedule = schedule or StepSchedule(image.channels)
    n = len(noise)
    noise = check_noise(noise, n, image, schedule)
    context = check_context(context, schedule.context, n)
    if batch_size < 1:
        raise PixelrtError(f"batch size must be at least 1, got {batch_size}")
    if force is not None:
        if force.shape != (n, *image.shape):
            raise PixelrtError(f"forced images have shape {force.shape}, expected {(n, *image.shape)}")
        force = check_images(force, image.levels, "forced images")
    C, H, W = image.shape
    S = schedule.substeps_per_pixel
    cps = C // S
    images = np.zeros((n, *image.shape), dtype=np.uint8)
    logp = np.zeros((n, *image.shape), dtype=np.float32)
    bar = _progress(H * ((n + batch_size - 1) // batch_size), desc, progress)
    pingpong = any(s.update == "replace" for s in state)
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        B = hi - lo
        tables = step_tables(image, schedule, noise[lo:hi], None if force is None else force[lo:hi], pingpong)
        plan = plan_buffers(device.step_inputs, device.step_outputs, state, B, schedule, image)
        device.prepare(plan, tables, {k: np.ascontiguousarray(v[lo:hi]) for k, v in context.items()}, image, schedule)
        per_row = W * S
        for i in range(H):
            device.run(i * per_row, (i + 1) * per_row, tables.parity)
            if bar is not None:
                device.sync()
                bar.update(1)
        values, logps = device.results()  # the one host sync of the batch
        images[lo:hi] = values.reshape(H, W, S, B, cps).transpose(3, 2, 4, 0, 1).reshape(B, C, H, W)
        logp[lo:hi] = logps.reshape(H, W, S, B, cps).transpose(3, 2, 4, 0, 1).reshape(B, C, H, W)
    if bar is not None:
        bar.close()
    return StepResult(images, logp)


class HostDevice:
    """The device loop's exact semantics in numpy, with any backend (``infer``) as the engine.

    Used by the CPU tests to prove the plan, the tables and the kernels' bookkeeping against
    ``step_loop``; each method mirrors one CUDA kernel of :data:`KERNELS`.
    """

    def __init__(self, runner):
        self.runner = runner
        self.step_inputs = dict(runner.inputs)
        self.step_outputs = {name: (np.dtype(np.float32), ()) for name in runner.output_names}

    def prepare(self, plan: BufferPlan, tables: StepTables, context: dict, image: ImageSpec, schedule) -> None:
        self.plan, self.image, self.schedule = plan, image, schedule
        self.mem = {k: np.zeros(shape, dtype) for k, (shape, dtype) in plan.buffers.items() if not k.startswith("out:")}
        self.mem.update({"tab:positions": tables.positions, "tab:noise": tables.noise, "tab:force": tables.force})
        for k, v in context.items():
            self.mem[f"ctx:{k}"] = v
        self.B = len(tables.noise[0]) // schedule.noise_per_substep

    def run(self, t0: int, t1: int, parity: np.ndarray) -> None:
        for t in range(t0, t1):
            self._pre()
            bind = self.plan.bind[int(parity[t])]
            feeds = {n: self.mem[bind[n]] for n in self.plan.inputs}
            out = self.runner.infer(feeds, check=t == 0)
            for n in self.plan.outputs:  # the engine writes into its bound output buffers
                if bind[n].startswith("state:"):
                    self.mem[bind[n]][...] = out[n]
                else:
                    self.mem[bind[n]] = np.ascontiguousarray(out[n])
            for st in self.plan.ring:
                self._commit_ring(st, bind)
            self._post(bind)
            self.mem["cursor"][0] += 1  # advance

    def _pre(self) -> None:
        t, m = int(self.mem["cursor"][0]), self.mem
        i, j, s = m["tab:positions"][t]
        m["in:row"], m["in:col"], m["in:channel"] = (np.array(v, dtype=np.int64) for v in (i, j, s))
        m["in:noise"] = m["tab:noise"][t].reshape(m["in:noise"].shape)
        m["in:force"] = m["tab:force"][t].reshape(m["in:force"].shape)

    def _commit_ring(self, st: StateSpec, bind: dict) -> None:
        m = self.mem
        i, j, s = m["tab:positions"][int(m["cursor"][0])]
        if s == self.schedule.substeps_per_pixel - 1:
            m[bind[st.name]][:, :, (i + st.pad) % st.rows, j + st.pad, :] = m[bind[st.source]]

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

    def sync(self) -> None:
        pass

    def results(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mem["tab:value"], self.mem["tab:logp"]


KERNELS = r"""
typedef long long i64;
extern "C" __global__ void pre_step(const i64* t_ptr, const i64* pos, const float* noise_tab, const i64* force_tab,
                                    float* noise_in, i64* force_in, i64* row_in, i64* col_in, i64* ch_in,
                                    int noise_n, int force_n) {
    const i64 t = *t_ptr;
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k < noise_n) noise_in[k] = noise_tab[t * noise_n + k];
    if (k < force_n) force_in[k] = force_tab[t * force_n + k];
    if (k == 0) { row_in[0] = pos[3 * t]; col_in[0] = pos[3 * t + 1]; ch_in[0] = pos[3 * t + 2]; }
}
extern "C" __global__ void commit_ring(const i64* t_ptr, const i64* pos, const float* src, float* dst,
                                       int n, int rows, int wp, int c, int pad, int last) {
    const i64 t = *t_ptr;
    if (pos[3 * t + 2] != last) return;
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;
    const int slot = ((int)pos[3 * t] + pad) % rows, col = (int)pos[3 * t + 1] + pad;
    const int bl = k / c, ch = k % c;   // src (B, L, C) -> dst (B, L, rows, W + 2 pad, C)
    dst[(((size_t)bl * rows + slot) * wp + col) * c + ch] = src[k];
}
extern "C" __global__ void post_step(const i64* t_ptr, const i64* pos, const i64* value, const float* logp,
                                     i64* value_tab, float* logp_tab, i64* pixel, int b, int channels, int cps,
                                     int last) {
    const i64 t = *t_ptr;
    const int s = (int)pos[3 * t + 2];
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    const int n = b * cps;
    if (k < n) {
        value_tab[t * n + k] = value[k];
        logp_tab[t * n + k] = logp[k];
        if (s != last) pixel[(k / cps) * channels + s * cps + (k % cps)] = value[k];
    }
    if (s == last && k < b * channels) pixel[k] = 0;
}
extern "C" __global__ void advance(i64* t_ptr) { *t_ptr += 1; }
"""
