"""Export specs as data (Optimum's pattern): graph I/O records, dynamic axes, state tensors.

Everything the runtime needs to drive a model is derived here from the model's
step module, as the bundle contract's typed records (``pixelrt.bundle``), so the
runtime never needs the model's Python code.
"""
from __future__ import annotations

from pixelrt.bundle import BATCH, RING_KINDS, ConditioningSpec, GraphSpec, StateSpec, StepSchedule, TensorSpec


def state_specs(stepper, width: int) -> list[StateSpec]:
    """One ring-row state per cache of a step module, paired with the output that updates it."""
    specs = []
    for k, (cache, layers) in enumerate(stepper.caches):
        specs.append(StateSpec(
            name=f"cache_{k}", shape=(BATCH, *cache.shape(width, layers)), dtype="float32", init="zeros",
            update="ring-row", source=f"new_{k}", rows=cache.rows, pad=cache.pad,
        ))
    return specs


def context_io(context: list[ConditioningSpec] | tuple = ()) -> list[TensorSpec]:
    """Graph inputs of per-image conditioning records (the batch axis prepended)."""
    return [c.io() for c in context or ()]


def state_input(s: StateSpec) -> TensorSpec:
    return TensorSpec(s.name, s.dtype, tuple(s.shape))


def state_output(s: StateSpec) -> TensorSpec:
    """The graph output that updates ``s``: a ring state's new column (B, L, C), else the whole state."""
    return TensorSpec(s.source, s.dtype, (BATCH, s.shape[1], s.shape[-1]) if s.update in RING_KINDS else tuple(s.shape))


def full_graph(channels: int, height: int, width: int, context=(), file: str = "full.onnx") -> GraphSpec:
    img = (BATCH, channels, height, width)
    return GraphSpec(file, (TensorSpec("x", "uint8", img), *context_io(context)),
                     (TensorSpec("loglik", "float32", (BATCH,), unit="nats"),
                      TensorSpec("logp", "float32", img, unit="nats")))


def step_graph(channels: int, states: list[StateSpec], context=(), channels_per_substep: int = 1,
               noise_per_substep: int = 1, file: str = "step.onnx", inputs: set | None = None,
               outputs: set | None = None) -> GraphSpec:
    """Step graph I/O; ``row`` states are inputs only (the per-row graph updates them). ``inputs`` /
    ``outputs``: keep only these names (a graph that ignores ``pixel`` or ``channel``)."""
    per = () if channels_per_substep == 1 else (channels_per_substep,)
    ins = [TensorSpec("pixel", "int64", (BATCH, channels)), TensorSpec("row", "int64", ()),
           TensorSpec("col", "int64", ()), TensorSpec("channel", "int64", ()),
           TensorSpec("force", "int64", (BATCH, *per)),
           TensorSpec("noise", "float32", (BATCH,) if noise_per_substep == 1 else (BATCH, noise_per_substep)),
           *(state_input(s) for s in states), *context_io(context)]
    outs = [TensorSpec("value", "int64", (BATCH, *per)), TensorSpec("logp", "float32", (BATCH, *per), unit="nats"),
            *(state_output(s) for s in states if s.update != "row")]
    return GraphSpec(file, tuple(t for t in ins if inputs is None or t.name in inputs),
                     tuple(t for t in outs if outputs is None or t.name in outputs))


def step_schedule(channels: int, substeps_per_pixel: int | None = None, noise_per_substep: int = 1,
                  context=(), row_graph: str | None = None, sampler: str = "inverse-cdf") -> StepSchedule:
    return StepSchedule(channels if substeps_per_pixel is None else substeps_per_pixel, noise_per_substep,
                        tuple(c.name for c in context or ()), row_graph, sampler)
