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
        for name, value in overrides.items():
            check_config_value(self.name, self.config_cls, name, value)
        try:
            return self.config_cls(**overrides)
        except (TypeError, ValueError) as e:
            raise PixelrtError(f"model {self.name!r}: invalid config ({e}); see `pixelrt train --help` for --set") from None


INT_MAX = 4096  # widths, depths, kernels, classes: bounded so that a typo cannot ask for terabytes


def check_config_value(model: str, config_cls: type, name: str, value: Any) -> None:
    """One --set value against its config field's declared type: ints are whole numbers in 1..4096 (0 allowed
    where the default is 0, e.g. 'no classes'), floats finite, bools true/false, strings strings."""
    import math
    import typing

    hints = typing.get_type_hints(config_cls)
    kind = hints.get(name)
    allowed = set(typing.get_args(kind)) or {kind}
    allowed.discard(type(None))
    default = next((f.default for f in fields(config_cls) if f.name == name), None)
    if value is None and type(None) in (typing.get_args(kind) or ()):
        return
    what = f"--set {name}={value!r}"
    if allowed <= {int}:
        low = 0 if default == 0 else 1
        if isinstance(value, bool) or not isinstance(value, int):
            raise PixelrtError(f"{what}: model {model!r} takes a whole number for {name}, e.g. --set {name}=64")
        if not low <= value <= max(INT_MAX, default if isinstance(default, int) else 0):
            raise PixelrtError(f"{what}: {name} must lie in {low}..{INT_MAX}")
    elif allowed <= {float, int}:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise PixelrtError(f"{what}: model {model!r} takes a finite number for {name}")
    elif allowed == {bool} and not isinstance(value, bool):
        raise PixelrtError(f"{what}: {name} is true or false")
    elif allowed == {str} and not isinstance(value, str):
        raise PixelrtError(f"{what}: {name} is a name, e.g. --set {name}={default}")


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
