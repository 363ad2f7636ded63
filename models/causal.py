"""A causal container: compose a PixelCNN from pixelrt's layers and get its step path for free.

    model = CausalSequential(channels=1, levels=256, layers=[
        MaskedConv2d(1, 64, 7, "A", groups=1),
        Residual(nn.ReLU(), MaskedConv2d(64, 64, 3, "B", 1), GatedActivation(1), MaskedConv2d(32, 64, 1, "B", 1)),
        nn.ReLU(),
        MaskedConv2d(64, 1 * 256, 1, "B", 1),          # the logits: channels * levels
    ])

The last layer's output is read as (B, C, levels, H, W) logits of a categorical per sub-pixel. The
step module is derived from the layers, in the spirit of ``nn.Sequential``: every k x k masked conv
is split into its centre tap (on this step's input) and its cached window (the positions before it,
from a ring of its input rows: ``layers.ConvWindowStack``); convs of one geometry share one stacked
state; 1 x 1 convs, activations, gates and residual adds run per position. Nothing is hand-written
per architecture, so any composition of these layers exports through ``pixelrt.export``.

Layers allowed: ``MaskedConv2d`` (the first Mask A, the rest Mask B, all with ``groups = channels``),
the elementwise activations in ``ELEMENTWISE``, ``GatedActivation`` (tanh(a) * sigmoid(b) within
each colour group) and ``Residual(*layers)`` (x + f(x)). Anything else is refused by name.
"""
from __future__ import annotations

import torch
from torch import nn

from pixelrt.bundle.graphs import step_graph, step_schedule
from pixelrt.models.categorical import categorical_step, normalize
from pixelrt.models.contract import StepModule
from pixelrt.models.heads import gather_logp, log_softmax
from pixelrt.models.layers import ConvWindowStack, MaskedConv2d, ring_states

ELEMENTWISE = (nn.ReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.Identity)


class GatedActivation(nn.Module):
    """tanh(a) * sigmoid(b) with a, b the two halves of each colour group's channels: 2n -> n.

    Pairing inside a group keeps the R->G->B order: output group g reads only input group g."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 2n, ...) -> (B, n, ...)
        B, n2 = x.shape[0], x.shape[1]
        parts = x.reshape(B, self.groups, 2, n2 // (2 * self.groups), *x.shape[2:])
        out = torch.tanh(parts[:, :, 0]) * torch.sigmoid(parts[:, :, 1])
        return out.reshape(B, n2 // 2, *x.shape[2:])


class Residual(nn.Module):
    """x + layers(x): a residual block of the same allowed layers."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.layers:
            h = layer(h)
        return x + h


def _walk(layers) -> list[MaskedConv2d]:
    """Every masked conv in execution order (into residual blocks)."""
    out = []
    for layer in layers:
        if isinstance(layer, Residual):
            out += _walk(layer.layers)
        elif isinstance(layer, MaskedConv2d):
            out.append(layer)
    return out


def _check_layers(layers, channels: int, top: bool = True) -> None:
    for k, layer in enumerate(layers):
        if isinstance(layer, Residual):
            _check_layers(layer.layers, channels, top=False)
        elif isinstance(layer, MaskedConv2d):
            first = top and k == 0
            if layer.mask_type != ("A" if first else "B") or layer.groups != channels:
                raise ValueError(f"layer {k} ({layer.kernel}x{layer.kernel} Mask {layer.mask_type}, groups "
                                 f"{layer.groups}): the first conv must be Mask A and every other Mask B, all with "
                                 f"groups={channels} (the image's channels)")
            if layer.kernel > 1 and layer.kernel % 2 == 0:
                raise ValueError(f"layer {k}: kernel {layer.kernel} must be odd")
        elif isinstance(layer, GatedActivation):
            if layer.groups != channels:
                raise ValueError(f"layer {k}: GatedActivation(groups={layer.groups}) must pair within the "
                                 f"{channels} colour groups")
        elif not isinstance(layer, ELEMENTWISE):
            raise ValueError(f"layer {k} is a {type(layer).__name__}, which CausalSequential cannot derive a step "
                             f"path for; allowed: MaskedConv2d, Residual, GatedActivation, "
                             f"{', '.join(c.__name__ for c in ELEMENTWISE)}")
        if top and k == 0 and not isinstance(layer, MaskedConv2d):
            raise ValueError(f"the first layer must be a Mask A MaskedConv2d, got {type(layer).__name__}")


def _describe(layer: nn.Module):
    if isinstance(layer, Residual):
        return {"residual": [_describe(m) for m in layer.layers]}
    if isinstance(layer, MaskedConv2d):
        return {"conv": [layer.in_channels, layer.out_channels, layer.kernel, layer.mask_type]}
    return type(layer).__name__


class CausalSequential(nn.Module):
    """A categorical autoregressive model from pixelrt's layers; implements the step protocol."""

    family = "causal-sequential"

    def __init__(self, channels: int, levels: int, layers: list[nn.Module]):
        super().__init__()
        if not 2 <= levels <= 256:
            raise ValueError(f"levels must be in 2..256 (uint8 images), got {levels}")
        layers = list(layers)
        if not layers:
            raise ValueError("CausalSequential needs at least one layer")
        _check_layers(layers, channels)
        convs = _walk(layers)
        if convs[0].in_channels != channels or not isinstance(layers[-1], MaskedConv2d) \
                or layers[-1].out_channels != channels * levels:
            raise ValueError(f"the first conv must read the {channels} image channels and the last layer must be a "
                             f"MaskedConv2d with channels * levels = {channels * levels} outputs (the logits)")
        self.channels, self.levels = channels, levels
        self.layers = nn.ModuleList(layers)
        self.config = {"channels": channels, "levels": levels}

    def describe(self) -> dict:
        return {"family": self.family, "config": {**self.config, "layers": [_describe(m) for m in self.layers]}}

    def logits_from_float(self, xf: torch.Tensor) -> torch.Tensor:
        h = xf
        for layer in self.layers:
            h = layer(h)
        B, _, H, W = h.shape
        return h.reshape(B, self.channels, self.levels, H, W)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(x, self.levels)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) integer image -> (B, C, H, W) log p of each sub-pixel given its past, nats."""
        logp = log_softmax(self.logits_from_float(self.normalize(x)), dim=2)
        return gather_logp(logp, x.long(), dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_prob(x).flatten(1).sum(1)

    def step_module(self, image) -> "CausalSequentialStep":
        return CausalSequentialStep(self, image.width)


class CausalSequentialStep(StepModule):
    """The derived step module: one sub-pixel from one stacked ring state per conv geometry.

    The layers are compiled into a plan of plain tuples (it survives the deep copy export makes):
    ("conv", centre index, (state, layer) or None), ("op", module index) and ("res", sub-plan)."""

    def __init__(self, model: CausalSequential, width: int):
        super().__init__()
        self.channels, self.levels = model.channels, model.levels
        convs = _walk(model.layers)
        geometry: dict[tuple, list[int]] = {}
        for k, conv in enumerate(convs):  # one state per (kernel, Cin, Cout): a stack's taps are one MatMul
            if conv.kernel > 1:
                geometry.setdefault((conv.kernel, conv.in_channels, conv.out_channels), []).append(k)
        slots = {k: (s, l) for s, group in enumerate(geometry.values()) for l, k in enumerate(group)}
        self.stacks = nn.ModuleList(ConvWindowStack([convs[k] for k in group]) for group in geometry.values())
        self.centres = nn.ModuleList(conv.stepper() for conv in convs)
        self.ops = nn.ModuleList()
        counter = iter(range(len(convs)))
        self.plan = self._compile(model.layers, counter, slots)
        self.first_slot = slots.get(0)  # the first conv reads the image itself
        self.states = tuple(ring_states([(st.spec, st.layers) for st in self.stacks], width))
        self.graph, self.schedule = step_graph(self.channels, self.states), step_schedule(self.channels)

    def _compile(self, layers, counter, slots) -> tuple:
        plan = []
        for layer in layers:
            if isinstance(layer, Residual):
                plan.append(("res", self._compile(layer.layers, counter, slots)))
            elif isinstance(layer, MaskedConv2d):
                k = next(counter)
                plan.append(("conv", k, slots.get(k)))
            else:
                self.ops.append(layer)
                plan.append(("op", len(self.ops) - 1))
        return tuple(plan)

    def forward(self, pixel, row, col, channel, force, noise, *caches):
        windows = [stack(cache, row, col) for stack, cache in zip(self.stacks, caches)]  # (L, B, Cout) each
        inputs = [[None] * stack.layers for stack in self.stacks]
        logits = self._run(self.plan, normalize(pixel, self.levels), windows, inputs)
        value, logp, full = categorical_step(logits, pixel, channel, force, noise, self.channels, self.levels)
        if self.first_slot is not None:  # the first conv's cached input: this pixel with its new value
            s, l = self.first_slot
            inputs[s][l] = normalize(full, self.levels)
        return (value, logp, *(torch.stack(group, dim=1) for group in inputs))

    def _run(self, plan, h, windows, inputs):
        for op in plan:
            if op[0] == "res":
                h = h + self._run(op[1], h, windows, inputs)
            elif op[0] == "conv":
                out = self.centres[op[1]](h)
                if op[2] is not None:
                    s, l = op[2]
                    out = out + windows[s][l]
                    inputs[s][l] = h  # this position's input, written into the ring after the pixel's last channel
                h = out
            else:
                h = self.ops[op[1]](h)
        return h
