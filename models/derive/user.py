"""The user's own module for `pixelrt convert`: built from its class, its weights loaded, the seed fixed.

Kept on the models side so that the CLI (pixelrt/convert_cli.py) never imports torch itself.
"""
from __future__ import annotations

import torch

from pixelrt.errors import PixelrtError


def build_user_module(cls, init: dict, weights: str | None = None) -> torch.nn.Module:
    """``cls(**init)`` in eval mode with ``weights`` (a state_dict read without unpickling) loaded strictly; then
    torch's global seed is fixed so that what export draws (random reference images or context) is reproducible."""
    from pixelrt.models.pclucas import read_state_dict

    try:
        module = cls(**init)
    except TypeError as e:
        raise PixelrtError(f"{cls.__name__}(**--init) failed: {e}") from None
    if weights:
        try:
            module.load_state_dict(read_state_dict(weights), strict=True)
        except RuntimeError as e:
            detail = " ".join(str(e).split())[:300]
            raise PixelrtError(f"{weights} does not fit {cls.__name__} ({detail})") from None
    torch.manual_seed(0)
    return module.eval()
