"""JSON documents pixelrt writes (bundle manifests, checkpoint configs), read safely.

JSON only: reading a document never executes code from it. The parser is the bundle contract's
bounded one (size, depth, no NaN / Infinity, no duplicate keys).
"""
from __future__ import annotations

from pathlib import Path


def read_json_document(path: Path, fmt: str, what: str, error: type[Exception], fix: str) -> dict:
    """Parse ``path`` and check its ``format`` field; raise ``error`` naming the file and ``fix``."""
    from pixelrt.bundle.fields import read_document

    return read_document(path, fmt, what, error, fix).value
