"""The model contract: the step protocol every exportable model implements, and the export spec.

An autoregressive model is exportable when it has

    log_prob(x, **context) -> (B, C, H, W) nats   # x uint8/int (B, C, H, W); the full path
    step_module(image) -> StepModule              # one sub-step from cached state: the step path
    describe() -> {"family": str, "config": dict}

and optionally

    row_module(image) -> StepModule               # runs once per finished row (step.schedule.row_graph)
    wave_module(image) -> StepModule | None       # several pixels per call (declares ``wavefront``; see
                                                  # bundle.state.Wavefront), on the step module's states
    conditioning -> tuple[ConditioningSpec]        # per-image context inputs (label, map), default none
    head -> HeadSpec                              # default: a categorical over config.levels
    trace_context() -> context manager            # around tracing (e.g. torch.cond branches)

A StepModule is an ``nn.Module`` that declares, as the bundle's own records, its graph I/O (``graph``:
inputs in ``forward``'s argument order, outputs in its return order), and for the step module its
states (``states``) and schedule (``schedule``). Those records are what the manifest stores and what
the runtime's step loop reads, so nothing else about the model is needed to drive it.

Composite models (the VAE, the multi-scale PixelRNN, the PixelVAE) describe themselves with
``export_spec(image) -> ExportSpec``: graphs and parts, where a part is an ExportSpec of its own.
A model composed of pixelrt's layers (``models/causal.py``) gets its step module from the layers.

Everything here is data for ``pixelrt.export``: one exporter traces the graphs the spec lists, and
one validator checks them (docs/export-your-model.md).
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from pixelrt.bundle import ConditioningSpec, GraphSpec, HeadSpec, ImageSpec, LatentSpec, StateSpec, StepSchedule
from pixelrt.bundle.graphs import full_graph
from pixelrt.bundle.state import Wavefront
from pixelrt.errors import PixelrtError

REQUIRED = {
    "log_prob": "log_prob(x, **context) -> (B, C, H, W) log p of each sub-pixel given its past, in nats",
    "step_module": "step_module(image) -> a StepModule declaring graph, states and schedule",
    "describe": "describe() -> {'family': name, 'config': a JSON-able dict}",
}
DOCS = "docs/export-your-model.md"


class StepModule(nn.Module):
    """Base of step and row modules: ``graph`` names the I/O of ``forward`` (same order); a step
    module also declares ``states`` and ``schedule``. Subclasses set them in ``__init__``."""

    graph: GraphSpec
    states: tuple = ()
    schedule: StepSchedule | None = None

    def input_names(self) -> list[str]:
        return self.graph.input_names()

    def output_names(self) -> list[str]:
        return self.graph.output_names()


def check_protocol(model: Any) -> None:
    """Refuse, naming what is missing, a module that neither implements the step protocol nor
    describes itself with ``export_spec``."""
    if callable(getattr(model, "export_spec", None)):
        return
    missing = [name for name in REQUIRED if not callable(getattr(model, name, None))]
    if missing:
        need = "; ".join(REQUIRED[m] for m in missing)
        raise PixelrtError(
            f"{type(model).__name__} does not implement pixelrt's step protocol: missing {', '.join(missing)} "
            f"({need}). Compose the model from pixelrt's layers (pixelrt.models.causal.CausalSequential) or add "
            f"the methods; see {DOCS}")


def conditioning(model) -> tuple[ConditioningSpec, ...]:
    return tuple(getattr(model, "conditioning", ()) or ())


def head(model, image: ImageSpec) -> HeadSpec:
    return getattr(model, "head", None) or HeadSpec("categorical", image.levels, "inverse-cdf")


class FullGraph(nn.Module):
    """uint8 x (B, C, H, W) [+ context in ``names`` order] -> (loglik (B,) nats, logp (B, C, H, W) nats)."""

    def __init__(self, model: nn.Module, names=()):
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, x, *context):
        logp = self.model.log_prob(x, **dict(zip(self.names, context)))
        return logp.flatten(1).sum(1), logp


@dataclass
class Graph:
    """One ONNX graph of a bundle: the module to trace and its I/O records (which also give the
    example inputs and the dynamic batch axes). ``trace``: a context manager factory around tracing."""

    module: nn.Module
    spec: GraphSpec
    trace: Callable[[], Any] = contextlib.nullcontext


@dataclass
class Part:
    """A sub-bundle of a composite: its own spec, and how it sees the parent's reference images."""

    spec: "ExportSpec"
    role: str
    context: str | None = None
    inputs: Callable[[np.ndarray], tuple[np.ndarray, dict]] = field(default=lambda x: (x, {}))


@dataclass
class ExportSpec:
    """Everything the exporter and the validator need, as data (the Optimum pattern)."""

    kind: str                       # a key of pixelrt.bundle.KINDS (and of the runtime's pipeline table)
    model: nn.Module                # the PyTorch reference: log_prob / forward / bounds
    image: ImageSpec
    graphs: dict[str, Graph]
    head: HeadSpec
    states: tuple[StateSpec, ...] = ()
    schedule: StepSchedule | None = None
    conditioning: tuple[ConditioningSpec, ...] = ()
    latent: LatentSpec | None = None
    parts: dict[str, Part] = field(default_factory=dict)
    notes: dict = field(default_factory=dict)

    @property
    def describe(self) -> dict:
        return self.model.describe()

    def context_names(self) -> list[str]:
        return [c.name for c in self.conditioning]


def autoregressive_spec(model: nn.Module, image: ImageSpec, wavefront: bool = True) -> ExportSpec:
    """The spec of any model that implements the step protocol: full, step and (optionally) row and
    wavefront graphs (``wavefront=False``: without the wavefront graph)."""
    check_protocol(model)
    ctx = conditioning(model)
    C, H, W = image.shape
    step = _declared(model, "step_module", model.step_module(image), schedule=True)
    trace = getattr(model, "trace_context", contextlib.nullcontext)
    graphs = {"full": Graph(FullGraph(model, [c.name for c in ctx]), full_graph(C, H, W, ctx)),
              "step": Graph(step, step.graph, trace)}
    if step.schedule is not None and step.schedule.row_graph:
        if not callable(getattr(model, "row_module", None)):
            raise PixelrtError(f"{type(model).__name__}'s step schedule names a row graph "
                               f"{step.schedule.row_graph!r} but the model has no row_module(image); see {DOCS}")
        row = _declared(model, "row_module", model.row_module(image))
        graphs[step.schedule.row_graph] = Graph(row, row.graph, trace)
    schedule = step.schedule
    wave = model.wave_module(image) if wavefront and callable(getattr(model, "wave_module", None)) else None
    if wave is not None:  # None: no wavefront for this image (e.g. no wider than the lag)
        wave = _declared(model, "wave_module", wave)
        front = getattr(wave, "wavefront", None)
        if not isinstance(front, Wavefront) or tuple(getattr(wave, "states", step.states)) != tuple(step.states):
            raise PixelrtError(f"{type(model).__name__}.wave_module(image) must declare ``wavefront`` (a "
                               f"pixelrt.bundle.state.Wavefront) and run on the step module's states; see {DOCS}")
        graphs[front.graph] = Graph(wave, wave.graph, trace)
        schedule = dataclasses.replace(schedule, wavefront=front)
    return ExportSpec("autoregressive", model, image, graphs, head(model, image), tuple(step.states), schedule, ctx)


def _declared(model, method: str, module, schedule: bool = False) -> StepModule:
    """``module`` if it is a StepModule that declares its graph (and, for a step module, its schedule)."""
    ok = isinstance(module, StepModule) and isinstance(getattr(module, "graph", None), GraphSpec) \
        and (not schedule or isinstance(module.schedule, StepSchedule))
    if not ok:
        need = "graph (a GraphSpec)" + (" and schedule (a StepSchedule)" if schedule else "")
        raise PixelrtError(f"{type(model).__name__}.{method}(image) returned a {type(module).__name__}, not a "
                           f"pixelrt.models.contract.StepModule declaring {need}; see {DOCS}")
    return module.eval()


def export_spec(model: nn.Module, image: ImageSpec, wavefront: bool = True) -> ExportSpec:
    """A model's spec: its own ``export_spec`` (composites) or the step protocol's."""
    check_protocol(model)
    if callable(getattr(model, "export_spec", None)):
        return model.export_spec(image)
    return autoregressive_spec(model, image, wavefront)


def check_exportable(model: nn.Module, image: ImageSpec) -> None:
    """Build the model's export spec (step and row modules included) for ``image``, so that a config
    that would train but could not be exported is refused before training, not after."""
    try:
        export_spec(model, image)
    except ValueError as e:
        raise PixelrtError(f"this model config trains but cannot be exported for {'x'.join(map(str, image.shape))} "
                           f"images: {e}") from None


def kind_of(model) -> str:
    """The bundle kind a model exports to: its ``kind`` (composites say), else "autoregressive"."""
    return getattr(model, "kind", "autoregressive")


def example_context(records, n: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Valid random context for ``n`` images from conditioning ``records`` (or a model or spec that has
    them): labels below the class count, standard-normal maps."""
    records = conditioning(records) if not isinstance(records, (tuple, list)) else records
    rng = np.random.default_rng(seed)
    out = {}
    for c in records:
        if c.kind == "class":
            out[c.name] = rng.integers(0, c.classes, n).astype(np.int64)
        else:
            out[c.name] = rng.standard_normal((n, *c.shape)).astype(np.float32)
    return out


def torch_context(context: dict) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.asarray(v)) for k, v in (context or {}).items()}
