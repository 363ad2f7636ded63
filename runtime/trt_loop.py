"""The step loop with its state resident on the device: TensorRT + CUDA graphs, synced once per batch.

Same semantics as :func:`pixelrt.runtime.sampler.step_loop` (raster order, S sub-steps per pixel
with K uniforms each, teacher forcing, context inputs, and every state kind: ``ring-row``,
``strided-ring-row``, ``replace`` and ``row`` with its per-row graph), laid out for a GPU:

* **Tables up-front.** Per batch, the host builds step-major tables (:func:`step_tables`): position
  (row, col, sub-step) of every step t, its noise slice and its forced values, uploads them once,
  and never touches the device again until the batch ends (or a row ends, for a progress bar).
* **Fixed addresses, moving cursor.** A CUDA graph replays fixed addresses, so each step's inputs
  live in fixed buffers that a tiny ``pre_step`` kernel fills from the tables at a device-side step
  counter; ``post_step`` stores value/log p into the result tables, maintains the current pixel, and
  ``commit_ring`` writes each ring state's new column in place after a pixel's last sub-step (a
  ``strided-ring-row`` state only at pixels on its grid, row % stride == col % stride == 0, at
  column col // stride: the host loop's rule); ``advance`` bumps the counter.
  pre -> TensorRT -> commits -> post -> advance is one captured graph.
* **Ping-pong.** TensorRT gives wrong results when an input and an output share memory, and a
  ``replace`` state is both. It gets two buffers: pixels of even index read #0 and write #1, odd ones
  the reverse (every sub-step of a pixel rewrites the other buffer whole, so the last one wins).
  That is one captured graph per parity. Ring states are inputs only (their step outputs are
  separate column buffers), so they need one buffer.
* **The per-row graph** (``row`` states) has its own engine and its own captured graph: after row
  i's last step, ``gather_row`` copies the finished row (B, C, W) out of the value table and writes
  ``row`` = i (both read at the device cursor, so the graph is the same for every row), the row
  engine runs on the same stream, and each ``row`` state is replaced by a device-to-device copy of
  its output (the engine writes separate output buffers: no aliasing). The step graph reads the row
  states in place. When the row graph reads a ``replace`` state, which of its two buffers is current
  depends on the pixel count so far, so the row graph is captured once per such parity
  (:attr:`StepTables.row_parity`).

:func:`plan_buffers` makes every buffer assignment and checks that no call aliases an input with an
output. The plan, the tables and the per-step semantics are plain numpy and run on any machine
through :class:`pixelrt.runtime.trt_host.HostDevice` (ONNX Runtime sessions standing in for the
engines), which the CPU tests check against ``step_loop`` bit for bit. :class:`CudaDevice`
(runtime/trt_device.py) executes the same plan on a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pixelrt.errors import PixelrtError
from pixelrt.bundle import ImageSpec, StateSpec, StepSchedule
from pixelrt.runtime.sampler import StepResult, _progress, check_loop_inputs

LOOP_INPUTS = ("pixel", "row", "col", "channel", "force", "noise")
RING = ("ring-row", "strided-ring-row")
DEVICE_UPDATES = (*RING, "replace", "row")


# -- tables and plan (numpy, tested on CPU) ---------------------------------------------------
@dataclass
class StepTables:
    positions: np.ndarray  # (T, 3) int64: row, col, sub-step of step t (raster order, sub-steps innermost)
    noise: np.ndarray      # (T, B*K) float32: noise[:, s*K:(s+1)*K, i, j] of step t, batch-major
    force: np.ndarray      # (T, B*cps) int64: forced values of step t's channels, or -1
    parity: np.ndarray     # (T,) int64: ping-pong buffer set of step t (pixel index % 2 with replace states)
    row_parity: np.ndarray = field(default=None)  # (H,) int64: current replace buffer after row i (row graph)


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
    # pixel p reads buffer p % 2 and writes the other: after row i ((i+1)*W pixels) the current one is
    row_parity = ((np.arange(H) + 1) * W) % 2 if pingpong else np.zeros(H, dtype=np.int64)
    return StepTables(positions, np.ascontiguousarray(nz, dtype=np.float32), np.ascontiguousarray(fc),
                      parity.astype(np.int64), row_parity.astype(np.int64))


@dataclass
class BufferPlan:
    """Device buffers (id -> (shape, dtype)) and, per parity, which buffer each graph tensor binds."""

    buffers: dict
    bind: list          # [parity 0 {tensor: buffer id}, parity 1 {...}] of the step graph
    inputs: tuple       # step-graph input names
    outputs: tuple      # step-graph output names
    ring: list          # ring-row and strided-ring-row StateSpecs (committed by commit_ring)
    replace: list       # replace StateSpecs (ping-pong)
    row_bind: list = field(default_factory=list)  # [row parity 0 {...}, 1 {...}] of the row graph, or []
    row_inputs: tuple = ()
    row_outputs: tuple = ()
    row_copies: list = field(default_factory=list)  # (row-graph output buffer, state buffer) after each row

    def check(self) -> None:
        """No call may read and write one buffer (TensorRT's no-aliasing rule)."""
        graphs = [("step", self.bind, self.inputs, self.outputs), ("row", self.row_bind, self.row_inputs,
                                                                   self.row_outputs)]
        for graph, binds, inputs, outputs in graphs:
            for parity, bind in enumerate(binds):
                ins = {bind[n] for n in inputs}
                outs = [bind[n] for n in outputs]
                if len(set(outs)) != len(outs) or ins & set(outs):
                    raise PixelrtError(f"internal: buffer plan aliases inputs and outputs of the {graph} graph in "
                                       f"parity {parity}: {sorted(ins & set(outs))}")


def _resolve(dims, batch: int) -> tuple:
    """A shape with None/str for the batch axis -> concrete at ``batch``."""
    return tuple(d if isinstance(d, int) else batch for d in dims)


def plan_buffers(step_inputs: dict, step_outputs: dict, state: list[StateSpec], batch: int,
                 schedule: StepSchedule, image: ImageSpec, row_inputs: dict | None = None,
                 row_outputs: dict | None = None) -> BufferPlan:
    """step/row inputs/outputs: name -> (numpy dtype, shape with None/str for the batch axis).

    ``row_inputs``/``row_outputs`` describe the per-row graph; they are needed when ``state`` has
    ``row`` states (the host loop runs that graph only then, and so does the device loop).
    """
    unknown = [s.update for s in state if s.update not in DEVICE_UPDATES]
    if unknown:
        raise PixelrtError(f"the device-resident loop cannot drive state updates {unknown} (it drives "
                           f"{', '.join(DEVICE_UPDATES)}); use --runtime ort")
    for s in state:
        if np.dtype(s.dtype) != np.float32:
            raise PixelrtError(f"state {s.name} is {s.dtype}; the device loop's kernels commit float32 states")
    row_states = [s for s in state if s.update == "row"]
    if row_states and row_inputs is None:
        raise PixelrtError(f"this bundle's `row` states ({', '.join(s.name for s in row_states)}) are updated by its "
                           f"per-row graph {schedule.row_graph!r}: the device loop needs that graph's engine too "
                           "(`pixelrt.runtime.backends.step_backends` opens both)")
    buffers, bind0, bind1 = {}, {}, {}
    by_name = {s.name: s for s in state}
    for s in state:  # every state has its buffer(s), whichever graph reads it
        keys = [f"state:{s.name}#0", f"state:{s.name}#1"] if s.update == "replace" else [f"state:{s.name}"]
        for key in keys:
            buffers[key] = (_resolve(s.shape, batch), np.dtype(s.dtype))

    def state_keys(name: str, spec, graph: str) -> tuple[str, str]:
        st = by_name[name]
        if _resolve(spec[1], batch) != _resolve(st.shape, batch) or np.dtype(spec[0]) != np.dtype(st.dtype):
            raise PixelrtError(f"the {graph} graph's input {name!r} is {np.dtype(spec[0])} {list(spec[1])} but the "
                               f"manifest's state is {st.dtype} {list(st.shape)}; re-run `pixelrt export`")
        if st.update == "replace":
            return f"state:{name}#0", f"state:{name}#1"
        return f"state:{name}", f"state:{name}"

    for name, spec in step_inputs.items():
        if name in by_name:
            bind0[name], bind1[name] = state_keys(name, spec, "step")
            continue
        if name not in LOOP_INPUTS and name not in schedule.context:
            raise PixelrtError(f"the step graph's input {name!r} is neither a loop input, a state nor a context input "
                               "of the manifest's schedule; re-run `pixelrt export`")
        key = f"{'in' if name in LOOP_INPUTS else 'ctx'}:{name}"
        buffers[key] = (_resolve(spec[1], batch), np.dtype(spec[0]))
        bind0[name] = bind1[name] = key
    sources = {s.source: s for s in state if s.update != "row"}
    for name, spec in step_outputs.items():
        st = sources.get(name)
        if st is not None and st.update == "replace":
            bind0[name], bind1[name] = f"state:{st.name}#1", f"state:{st.name}#0"
        else:
            buffers[f"out:{name}"] = (_resolve(spec[1], batch), np.dtype(spec[0]))
            bind0[name] = bind1[name] = f"out:{name}"
    missing = [s.source for s in state if s.update != "row" and s.source not in step_outputs]
    missing += [n for n in ("value", "logp") if n not in step_outputs]
    if missing:
        raise PixelrtError(f"the step graph has no {', '.join(missing)} output; re-run `pixelrt export`")
    C = image.channels
    cps = schedule.channels_per_substep(C)
    K = schedule.noise_per_substep
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
    row_bind, copies = [], []
    if row_states:
        row_bind, copies = _plan_row_graph(row_inputs, row_outputs or {}, row_states, by_name, buffers, state_keys,
                                           batch, schedule, image)
    plan = BufferPlan(buffers, [bind0, bind1], tuple(step_inputs), tuple(step_outputs),
                      [s for s in state if s.update in RING], [s for s in state if s.update == "replace"],
                      row_bind, tuple(row_inputs or ()) if row_states else (),
                      tuple(row_outputs or ()) if row_states else (), copies)
    plan.check()
    return plan


def _plan_row_graph(row_inputs, row_outputs, row_states, by_name, buffers, state_keys, batch, schedule, image):
    """Bindings of the per-row graph (per row parity) and the copies that replace the row states."""
    bind0, bind1 = {}, {}
    loop_fed = {"row_pixels": ((batch, image.channels, image.width), np.int64), "row": ((), np.int64)}
    for name, spec in row_inputs.items():
        if name in loop_fed:
            shp, dt = loop_fed[name]
            if np.dtype(spec[0]) != np.dtype(dt) or _resolve(spec[1], batch) != shp:
                raise PixelrtError(f"the row graph's input {name!r} is {np.dtype(spec[0])} {list(spec[1])}, expected "
                                   f"int64 {list(shp)}; re-run `pixelrt export`")
            key = f"rowin:{name}"
            buffers[key] = (shp, np.dtype(dt))
            bind0[name] = bind1[name] = key
        elif name in by_name:  # its own states and any step state it reads, in place
            bind0[name], bind1[name] = state_keys(name, spec, "row")
        elif name in schedule.context:
            key = f"ctx:{name}"
            buffers.setdefault(key, (_resolve(spec[1], batch), np.dtype(spec[0])))
            bind0[name] = bind1[name] = key
        else:
            raise PixelrtError(f"the row graph's input {name!r} is neither row_pixels, row, a state nor a context input; "
                               "re-run `pixelrt export`")
    for name, (shp, dt) in loop_fed.items():  # gather_row writes both, declared or not
        buffers.setdefault(f"rowin:{name}", (shp, np.dtype(dt)))
    for name, spec in row_outputs.items():
        key = f"rowout:{name}"
        buffers[key] = (_resolve(spec[1], batch), np.dtype(spec[0]))
        bind0[name] = bind1[name] = key
    copies = []
    for s in row_states:
        if s.source not in row_outputs:
            raise PixelrtError(f"the row graph has no output {s.source!r} (state {s.name}); re-run `pixelrt export`")
        src, dst = f"rowout:{s.source}", f"state:{s.name}"
        if buffers[src] != buffers[dst]:
            raise PixelrtError(f"the row graph's output {s.source!r} is {buffers[src][1]} {list(buffers[src][0])} but "
                               f"state {s.name} is {buffers[dst][1]} {list(buffers[dst][0])}; re-run `pixelrt export`")
        copies.append((src, dst))
    return [bind0, bind1], copies


# -- the driver ----------------------------------------------------------------------------------
def device_loop(device, image: ImageSpec, state: list[StateSpec], noise: np.ndarray, force: np.ndarray | None = None,
                batch_size: int = 64, progress: bool = False, desc: str = "sampling",
                schedule: StepSchedule | None = None, context: dict | None = None) -> StepResult:
    """``step_loop`` on a device (HostDevice or CudaDevice): same arguments, same result.

    A bundle with ``row`` states needs a device built with its row graph (``row_inputs``/``row_outputs``).
    """
    schedule = schedule or StepSchedule(image.channels)
    n = len(noise)
    noise, force, context = check_loop_inputs(image, schedule, noise, force, context, batch_size)
    C, H, W = image.shape
    S = schedule.substeps_per_pixel
    cps = C // S
    images = np.zeros((n, *image.shape), dtype=np.uint8)
    logp = np.zeros((n, *image.shape), dtype=np.float32)
    bar = _progress(H * ((n + batch_size - 1) // batch_size), desc, progress)
    pingpong = any(s.update == "replace" for s in state)
    row_io = (getattr(device, "row_inputs", None), getattr(device, "row_outputs", None))
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        B = hi - lo
        tables = step_tables(image, schedule, noise[lo:hi], None if force is None else force[lo:hi], pingpong)
        plan = plan_buffers(device.step_inputs, device.step_outputs, state, B, schedule, image, *row_io)
        device.prepare(plan, tables, {k: np.ascontiguousarray(v[lo:hi]) for k, v in context.items()}, image, schedule)
        per_row = W * S
        for i in range(H):
            device.run(i * per_row, (i + 1) * per_row, tables.parity)
            if plan.row_bind:  # after the row's last step: the per-row graph, on the device too
                device.run_row(int(tables.row_parity[i]))
            if bar is not None:
                device.sync()
                bar.update(1)
        values, logps = device.results()  # the one host sync of the batch
        images[lo:hi] = values.reshape(H, W, S, B, cps).transpose(3, 2, 4, 0, 1).reshape(B, C, H, W)
        logp[lo:hi] = logps.reshape(H, W, S, B, cps).transpose(3, 2, 4, 0, 1).reshape(B, C, H, W)
    if bar is not None:
        bar.close()
    return StepResult(images, logp)
