"""JSON documents pixelrt writes (bundle manifests, checkpoint configs), read safely.

JSON only: reading a document never executes code from it.
"""
from __future__ import annotations

import json
from pathlib import Path


def read_json_document(path: Path, fmt: str, what: str, error: type[Exception], fix: str) -> dict:
    """Parse ``path`` and check its ``format`` field; raise ``error`` naming the file and ``fix``."""
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path} is corrupt (not valid JSON: {e}); {fix}") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise error(f"{path} is not a pixelrt {what} (format is not {fmt!r}); {fix}")
    return doc
