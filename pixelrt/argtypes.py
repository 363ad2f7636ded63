"""Argument types for the CLI: every number is checked where it is parsed.

argparse reports a bad value as ``pixelrt CMD: error: argument --batch-size: ...`` with exit 2 before
any work starts; these types say what range is allowed and why. Sizes that scale memory (images to
sample, interpolation steps) have upper bounds as well, checked again against the machine's memory
where the command knows the image size (:func:`check_memory`).
"""
from __future__ import annotations

import argparse
import math
import os

SEED_MAX = 2**32 - 1       # numpy's and torch's seeds both accept this range on every platform
COUNT_MAX = 10_000_000     # images, steps, batches: far above any real use, far below an overflow


def _int(text: str) -> int:
    try:
        return int(text, 10)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def int_range(low: int, high: int = COUNT_MAX, what: str = ""):
    """An int in [low, high]; the message names the range (and ``what`` the bound is for)."""
    def parse(text: str) -> int:
        value = _int(text)
        if not low <= value <= high:
            hint = f" ({what})" if what else ""
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {low}..{high}{hint}")
        return value
    parse.__name__ = f"int {low}..{high}"  # argparse shows the type's name in some messages
    return parse


positive = int_range(1)
nonnegative = int_range(0)
seed = int_range(0, SEED_MAX, "a seed")


def float_range(low: float, high: float = math.inf, low_open: bool = False):
    """A finite float in [low, high] (or (low, high] with ``low_open``); NaN and infinities are refused."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if value < low or (low_open and value == low) or value > high:
            left = "(" if low_open else "["
            raise argparse.ArgumentTypeError(f"{value:g} is out of range: use a value in {left}{low:g}, {high:g}]")
        return value
    parse.__name__ = "number"
    return parse


positive_float = float_range(0.0, low_open=True)
nonnegative_float = float_range(0.0)


def int_list(text: str, low: int = 1, high: int = COUNT_MAX) -> list[int]:
    """'1,4,16' -> [1, 4, 16]; every entry in [low, high], at least one."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated whole numbers, e.g. 1,64")
    parse = int_range(low, high)
    return [parse(p) for p in parts]


def physical_memory() -> int | None:
    """Bytes of RAM, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(what: str, nbytes: float, flag: str) -> None:
    """Refuse work whose arrays alone would exceed half of this machine's memory, before allocating."""
    from pixelrt.errors import PixelrtError

    total = physical_memory()
    if total is not None and nbytes > total / 2:
        raise PixelrtError(f"{what} needs about {nbytes / 2**30:.1f} GiB, more than half of this machine's "
                           f"{total / 2**30:.0f} GiB; lower {flag}")
