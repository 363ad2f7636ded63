"""Export specs as data (Optimum's pattern): graph I/O names, dynamic axes, state tensors.

Everything the runtime needs to drive a model is derived here from the model's
step module and written into the manifest, so the runtime never needs the
model's Python code.
"""
from __future__ import annotations

from pixelrt.runtime.bundle import StateSpec

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


def full_io(channels: int, height: int, width: int) -> dict:
    return {
        "inputs": [{"name": "x", "dtype": "uint8", "shape": [BATCH, channels, height, width]}],
        "outputs": [
            {"name": "loglik", "dtype": "float32", "shape": [BATCH], "unit": "nats"},
            {"name": "logp", "dtype": "float32", "shape": [BATCH, channels, height, width], "unit": "nats"},
        ],
    }


def step_io(stepper, channels: int, width: int) -> dict:
    states = state_specs(stepper, width)
    inputs = [
        {"name": "pixel", "dtype": "int64", "shape": [BATCH, channels]},
        {"name": "row", "dtype": "int64", "shape": []},
        {"name": "col", "dtype": "int64", "shape": []},
        {"name": "channel", "dtype": "int64", "shape": []},
        {"name": "force", "dtype": "int64", "shape": [BATCH]},
        {"name": "noise", "dtype": "float32", "shape": [BATCH]},
    ] + [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in states]
    outputs = [
        {"name": "value", "dtype": "int64", "shape": [BATCH]},
        {"name": "logp", "dtype": "float32", "shape": [BATCH], "unit": "nats"},
    ] + [{"name": s.source, "dtype": "float32", "shape": [BATCH, s.shape[1], s.shape[-1]]} for s in states]
    return {"inputs": inputs, "outputs": outputs}


def step_schedule(channels: int) -> dict:
    return {
        "order": "raster",
        "substeps_per_pixel": channels,
        "commit": "after-last-substep",
        "sampler": "inverse-cdf",
        "inputs": {"pixel": "pixel", "row": "row", "col": "col", "channel": "channel",
                   "force": "force", "noise": "noise"},
        "outputs": {"value": "value", "logp": "logp"},
        "row_graph": None,
    }
