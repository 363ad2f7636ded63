"""Graph I/O records built from the step protocol's pieces: full, step and row graphs, ring states.

Torch-free (records only), so that a model declares its step module's inputs, outputs and states with
the same records the manifest stores and the runtime reads (docs/export-your-model.md). Names follow
the step protocol: ``pixel, row, col, channel, force, noise`` in; ``value, logp`` out; each state
``s`` in and its ``s.source`` out.
"""
from __future__ import annotations

from pixelrt.bundle.records import BATCH, PIXELS, ConditioningSpec, GraphSpec, TensorSpec
from pixelrt.bundle.state import RING_KINDS, StateSpec, StepSchedule, Wavefront

STEP_INPUTS = ("pixel", "row", "col", "channel", "force", "noise")
WAVE_INPUTS = ("pixel", "rows", "cols", "channel", "force", "noise")


def ring_state(name: str, source: str, layers: int, rows: int, pad: int, width: int, channels: int,
               stride: int = 1) -> StateSpec:
    """A ring buffer of the last ``rows`` input rows of ``layers`` stacked layers, channels last."""
    update = "ring-row" if stride == 1 else "strided-ring-row"
    return StateSpec(name, (BATCH, layers, rows, width // stride + 2 * pad, channels), "float32", "zeros", update,
                     source, rows, pad, stride)


def row_state(name: str, shape: tuple, source: str | None = None) -> StateSpec:
    """A state the per-row graph replaces after every finished row (``source``: its output)."""
    return StateSpec(name, (BATCH, *shape), "float32", "zeros", "row", source or f"new_{name}")


def context_io(context=()) -> list[TensorSpec]:
    """Graph inputs of per-image conditioning records (the batch axis prepended)."""
    return [c.io() for c in context or ()]


def state_input(s: StateSpec) -> TensorSpec:
    return TensorSpec(s.name, s.dtype, tuple(s.shape))


def state_output(s: StateSpec) -> TensorSpec:
    """The graph output that updates ``s``: a ring state's new column (B, L, C), else the whole state."""
    return TensorSpec(s.source, s.dtype, (BATCH, s.shape[1], s.shape[-1]) if s.update in RING_KINDS else tuple(s.shape))


def full_graph(channels: int, height: int, width: int, context=(), file: str = "full.onnx") -> GraphSpec:
    """uint8 x (B, C, H, W) [+ context] -> loglik (B,) and logp (B, C, H, W), nats."""
    img = (BATCH, channels, height, width)
    return GraphSpec(file, (TensorSpec("x", "uint8", img), *context_io(context)),
                     (TensorSpec("loglik", "float32", (BATCH,), unit="nats"),
                      TensorSpec("logp", "float32", img, unit="nats")))


def step_graph(channels: int, states, context=(), channels_per_substep: int = 1, noise_per_substep: int = 1,
               file: str = "step.onnx", inputs: tuple = STEP_INPUTS) -> GraphSpec:
    """Step graph I/O: ``inputs`` (a subset of STEP_INPUTS, in order), the context, every state in;
    value, logp and every non-``row`` state's update out (``row`` states are updated by the row graph)."""
    per = () if channels_per_substep == 1 else (channels_per_substep,)
    known = {"pixel": TensorSpec("pixel", "int64", (BATCH, channels)), "row": TensorSpec("row", "int64", ()),
             "col": TensorSpec("col", "int64", ()), "channel": TensorSpec("channel", "int64", ()),
             "force": TensorSpec("force", "int64", (BATCH, *per)),
             "noise": TensorSpec("noise", "float32", (BATCH,) if noise_per_substep == 1 else (BATCH, noise_per_substep))}
    ins = [known[n] for n in inputs] + context_io(context) + [state_input(s) for s in states]
    outs = [TensorSpec("value", "int64", (BATCH, *per)), TensorSpec("logp", "float32", (BATCH, *per), unit="nats"),
            *(state_output(s) for s in states if s.update != "row")]
    return GraphSpec(file, tuple(ins), tuple(outs))


def wave_graph(channels: int, states, context=(), channels_per_substep: int = 1, noise_per_substep: int = 1,
               file: str = "wave.onnx", front: Wavefront | None = None) -> GraphSpec:
    """Wavefront graph I/O (``Wavefront``): the step graph's, with the pixels in flight as an axis beside the
    batch: ``rows``/``cols`` (pixels,), ``pixel`` (B, P, C), ``force``/``noise``/``value``/``logp`` (B, P[, n]),
    the step graph's own states and (B, P, L, C) new columns; ``front.layout`` "batch-last" moves the batch
    axis of each to the end (``bundle.state.WAVE_LAYOUTS``)."""
    front = front or Wavefront("wave", 1)
    per = () if channels_per_substep == 1 else (channels_per_substep,)
    k = () if noise_per_substep == 1 else (noise_per_substep,)
    ins = [TensorSpec("pixel", "int64", front.per_pixel(channels)), TensorSpec("rows", "int64", (PIXELS,)),
           TensorSpec("cols", "int64", (PIXELS,)), TensorSpec("channel", "int64", ()),
           TensorSpec("force", "int64", front.per_pixel(*per)), TensorSpec("noise", "float32", front.per_pixel(*k))]
    ins += context_io(context) + [TensorSpec(s.name, s.dtype, front.state_shape(s)) for s in states]
    outs = [TensorSpec("value", "int64", front.per_pixel(*per)),
            TensorSpec("logp", "float32", front.per_pixel(*per), unit="nats"),
            *(TensorSpec(s.source, s.dtype, front.new_shape(s)) for s in states)]
    return GraphSpec(file, tuple(ins), tuple(outs))


def row_graph(channels: int, width: int, reads, updates, context=(), file: str = "row.onnx",
              with_row: bool = True) -> GraphSpec:
    """Per-row graph I/O: the finished row's pixels (and its index), context, the states it ``reads``; out:
    the new value of every ``row`` state in ``updates``."""
    ins = [TensorSpec("row_pixels", "int64", (BATCH, channels, width))]
    ins += [TensorSpec("row", "int64", ())] if with_row else []
    outs = tuple(TensorSpec(s.source, s.dtype, tuple(s.shape)) for s in updates)
    return GraphSpec(file, (*ins, *context_io(context), *(state_input(s) for s in reads)), outs)


def step_schedule(channels: int, substeps_per_pixel: int | None = None, noise_per_substep: int = 1,
                  context=(), row_graph: str | None = None, sampler: str = "inverse-cdf") -> StepSchedule:
    return StepSchedule(channels if substeps_per_pixel is None else substeps_per_pixel, noise_per_substep,
                        tuple(c.name for c in context or ()), row_graph, sampler)


__all__ = ["STEP_INPUTS", "WAVE_INPUTS", "ConditioningSpec", "Wavefront", "wave_graph", "context_io", "full_graph", "ring_state", "row_graph", "row_state",
           "state_input", "state_output", "step_graph", "step_schedule"]
