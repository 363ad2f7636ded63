"""Registry of model builders, torchvision-style: one name, one builder, no duplicates.

A single test walks the registry, so no registered model goes untested.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

from torch import nn

from pixelrt.errors import PixelrtError
from pixelrt.models.contract import kind_of


@dataclass(frozen=True)
class ModelEntry:
    name: str
    config_cls: type
    build: Callable[[Any], nn.Module]
    description: str
    kind: str = "autoregressive"  # the bundle kind (pixelrt.bundle.KINDS): the model class's ``kind``

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


def register_model(name: str, config_cls: type, description: str):
    """Decorator registering ``build(config) -> nn.Module`` under ``name``; refuses duplicates. The entry's
    kind is the built class's ``kind`` (models/contract.py ``kind_of``): one name, decided in one place."""

    def wrap(build: Callable[[Any], nn.Module]):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelEntry(name, config_cls, build, description, kind_of(build))
        return build

    return wrap


def get_model(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise PixelrtError(f"unknown model {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}") from None


def model_names() -> list[str]:
    return sorted(_REGISTRY)
