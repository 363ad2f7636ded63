"""The files a command writes besides bundles and checkpoints: checked before the work, written atomically.

A command checks all of its output paths before it starts (a folder where a file is wanted, a path
under a file, a device, the command's own input) so that a long run never ends in a write that was
bound to fail; then each file is written whole through :func:`pixelrt.atomic.atomic_write_bytes`.
Torch-free.
"""
from __future__ import annotations

import io
import os
from typing import Iterable

import numpy as np

from pixelrt.atomic import atomic_write_bytes, check_file_target


def check_outputs(paths: Iterable[str | os.PathLike | None], protect: Iterable = ()) -> None:
    """Refuse now any output file path that could not, or must not, be written ('-' is stdout)."""
    protect = [p for p in protect if p is not None]
    for path in paths:
        if path is not None and str(path) != "-":
            check_file_target(path, protect)


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def write_npz(path: str | os.PathLike, protect: Iterable = (), **arrays) -> None:
    """An .npz written atomically (no 0-byte file on a full disk, no half file on a kill)."""
    atomic_write_bytes(path, npz_bytes(**arrays), protect=[p for p in protect if p is not None])


def write_text(path: str | os.PathLike, text: str, protect: Iterable = ()) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), protect=[p for p in protect if p is not None])
