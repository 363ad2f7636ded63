"""Registry of model builders, torchvision-style: one name, one builder, no duplicates.

A single test walks the registry, so no registered model goes untested.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

from torch import nn

from pixelrt.errors import PixelrtError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    config_cls: type
    build: Callable[[Any], nn.Module]
    description: str
    kind: str = "autoregressive"  # "autoregressive" (full + step graphs) or "vae" (encoder + decoder graphs)
    # or "multiscale" (two autoregressive stages and a conditioning graph, models/multiscale.py)
    # or "pixelvae" (encoder + features graphs and a conditioned autoregressive decoder, models/pixelvae.py)

    def make_config(self, **overrides) -> Any:
        """Config from keyword overrides; unknown keys are an error naming the known ones."""
        known = {f.name for f in fields(self.config_cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise PixelrtError(
                f"model {self.name!r} has no config field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}"
            )
        return self.config_cls(**overrides)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, config_cls: type, description: str, kind: str = "autoregressive"):
    """Decorator registering ``build(config) -> nn.Module`` under ``name``; refuses duplicates."""

    def wrap(build: Callable[[Any], nn.Module]):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelEntry(name, config_cls, build, description, kind)
        return build

    return wrap


def get_model(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise PixelrtError(f"unknown model {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}") from None


def model_names() -> list[str]:
    return sorted(_REGISTRY)
