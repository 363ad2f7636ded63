"""Export specs as data (Optimum's pattern): graph I/O names, dynamic axes, state tensors.

Everything the runtime needs to drive a model is derived here from the model's
step module and written into the manifest, so the runtime never needs the
model's Python code.
"""
from __future__ import annotations

from pixelrt.runtime.bundle import RING_KINDS, StateSpec

BATCH = "batch"


def state_specs(stepper, width: int) -> list[StateSpec]:
    """One ring-row state per cache of a step module, paired with the output that updates it."""
    specs = []
    for k, (cache, layers) in enumerate(stepper.caches):
        specs.append(StateSpec(
            name=f"cache_{k}", shape=(BATCH, *cache.shape(width, layers)), dtype="float32", init="zeros",
            update="ring-row", source=f"new_{k}", rows=cache.rows, pad=cache.pad,
        ))
    return specs


def context_io(context: list[dict] | None) -> list[dict]:
    """Manifest I/O records of per-image conditioning inputs, e.g. [{"name": "label", "dtype": "int64", "shape": []}]
    (shapes are per image; the batch axis is prepended)."""
    return [{"name": c["name"], "dtype": c["dtype"], "shape": [BATCH, *c.get("shape", [])]} for c in context or []]


def full_io(channels: int, height: int, width: int, context: list[dict] | None = None) -> dict:
    return {
        "inputs": [{"name": "x", "dtype": "uint8", "shape": [BATCH, channels, height, width]}] + context_io(context),
        "outputs": [
            {"name": "loglik", "dtype": "float32", "shape": [BATCH], "unit": "nats"},
            {"name": "logp", "dtype": "float32", "shape": [BATCH, channels, height, width], "unit": "nats"},
        ],
    }


def step_io(stepper, channels: int, width: int, states: list[StateSpec] | None = None,
            context: list[dict] | None = None, channels_per_substep: int = 1, noise_per_substep: int = 1) -> dict:
    """Step graph I/O. ``states`` defaults to the ring-row caches of a PixelCNN-style ``stepper``;
    ``row`` states are inputs only (the per-row graph updates them)."""
    states = state_specs(stepper, width) if states is None else states
    per = [] if channels_per_substep == 1 else [channels_per_substep]
    inputs = [
        {"name": "pixel", "dtype": "int64", "shape": [BATCH, channels]},
        {"name": "row", "dtype": "int64", "shape": []},
        {"name": "col", "dtype": "int64", "shape": []},
        {"name": "channel", "dtype": "int64", "shape": []},
        {"name": "force", "dtype": "int64", "shape": [BATCH, *per]},
        {"name": "noise", "dtype": "float32", "shape": [BATCH] + ([] if noise_per_substep == 1 else [noise_per_substep])},
    ] + [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in states] + context_io(context)
    outputs = [
        {"name": "value", "dtype": "int64", "shape": [BATCH, *per]},
        {"name": "logp", "dtype": "float32", "shape": [BATCH, *per], "unit": "nats"},
    ] + [{"name": s.source, "dtype": s.dtype,
          "shape": [BATCH, s.shape[1], s.shape[-1]] if s.update in RING_KINDS else list(s.shape)}
         for s in states if s.update != "row"]
    return {"inputs": inputs, "outputs": outputs}


def step_schedule(channels: int, substeps_per_pixel: int | None = None, noise_per_substep: int = 1,
                  context: list[dict] | None = None, row_graph: str | None = None,
                  sampler: str = "inverse-cdf") -> dict:
    return {
        "order": "raster",
        "substeps_per_pixel": channels if substeps_per_pixel is None else substeps_per_pixel,
        "noise_per_substep": noise_per_substep,
        "commit": "after-last-substep",
        "sampler": sampler,
        "inputs": {"pixel": "pixel", "row": "row", "col": "col", "channel": "channel",
                   "force": "force", "noise": "noise"},
        "outputs": {"value": "value", "logp": "logp"},
        "context": [c["name"] for c in context or []],
        "row_graph": row_graph,
    }
