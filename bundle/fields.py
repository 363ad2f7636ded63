"""Strict reading of untrusted JSON documents (bundle manifests, checkpoint configs).

A manifest comes from a download or a colleague, so every value is read through a
:class:`Field`: a JSON value together with its path in the document (``state[3].shape``).
Each accessor checks the type and the range and, on a miss, raises one error that names the
file, the path and the fix. Nothing here interprets the document; :mod:`pixelrt.bundle.schema`
says what each field must be.

The parser itself is bounded too: the file size, the nesting depth and the length of every
container are limited, ``NaN``, ``Infinity`` and numbers that overflow to infinity (``1e400``)
are refused, and duplicate keys are an error instead of a silent last-one-wins.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

MAX_DOCUMENT_BYTES = 16 << 20  # a manifest with a few thousand reference images is ~200 KiB
MAX_DEPTH = 16                 # the deepest manifest field is 6 levels down
MAX_ITEMS = 65536              # entries of one list or object
MAX_STRING = 4096
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")


class Field:
    """A JSON value at ``path`` of document ``where``; accessors raise ``error`` naming both."""

    def __init__(self, value: Any, path: str, where: str, error: type[Exception], fix: str):
        self.value, self.path, self.where, self.error, self.fix = value, path, where, error, fix

    # -- errors -------------------------------------------------------------------
    def fail(self, problem: str):
        raise self.error(f"{self.where}: {self.path or 'the document'} {problem}; {self.fix}")

    def _got(self) -> str:
        text = json.dumps(self.value)
        return text if len(text) <= 40 else text[:37] + "..."

    def child(self, key: str | int, value: Any) -> "Field":
        path = f"{self.path}[{key}]" if isinstance(key, int) else (f"{self.path}.{key}" if self.path else key)
        return Field(value, path, self.where, self.error, self.fix)

    # -- containers ---------------------------------------------------------------
    def obj(self, required: tuple = (), optional: tuple = (), open_keys: bool = False) -> "Field":
        """Check that this is an object with every ``required`` key and, unless ``open_keys``,
        no key outside ``required + optional``."""
        if not isinstance(self.value, dict):
            self.fail(f"must be an object, got {self._got()}")
        missing = [k for k in required if k not in self.value]
        if missing:
            self.child(missing[0], None).fail("is missing")
        if not open_keys:
            extra = sorted(set(self.value) - set(required) - set(optional))
            if extra:
                self.child(extra[0], None).fail(f"is not a field this pixelrt knows (allowed here: "
                                                f"{', '.join(required + optional)})")
        return self

    def __getitem__(self, key: str | int) -> "Field":
        if isinstance(key, int):
            if not isinstance(self.value, list) or not 0 <= key < len(self.value):
                self.fail(f"must be a list with an entry {key}")
            return self.child(key, self.value[key])
        if not isinstance(self.value, dict):
            self.fail(f"must be an object, got {self._got()}")
        if key not in self.value:
            self.child(key, None).fail("is missing")
        return self.child(key, self.value[key])

    def get(self, key: str) -> "Field | None":
        """The field ``key``, or None when it is absent or null."""
        if not isinstance(self.value, dict):
            self.fail(f"must be an object, got {self._got()}")
        v = self.value.get(key)
        return None if v is None else self.child(key, v)

    def items(self, max_len: int = MAX_ITEMS) -> list[tuple[str, "Field"]]:
        self.obj(open_keys=True)
        if len(self.value) > max_len:
            self.fail(f"has {len(self.value)} entries, at most {max_len} are allowed")
        return [(k, self.child(k, v)) for k, v in self.value.items()]

    def list(self, min_len: int = 0, max_len: int = MAX_ITEMS) -> list["Field"]:
        if not isinstance(self.value, list):
            self.fail(f"must be a list, got {self._got()}")
        if not min_len <= len(self.value) <= max_len:
            self.fail(f"must have {min_len}..{max_len} entries, has {len(self.value)}")
        return [self.child(i, v) for i, v in enumerate(self.value)]

    # -- scalars ------------------------------------------------------------------
    def int(self, lo: int, hi: int) -> int:
        v = self.value
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            self.fail(f"must be an integer in {lo}..{hi}, got {self._got()}")
        return v

    def number(self, lo: float = -math.inf, hi: float = math.inf) -> float:
        v = self.value
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            rng = "a finite number" if math.isinf(lo) and math.isinf(hi) else f"a finite number in {lo}..{hi}"
            self.fail(f"must be {rng}, got {self._got()}")
        return float(v)

    def str(self, choices: tuple | None = None, pattern: re.Pattern | None = None, max_len: int = MAX_STRING) -> str:
        v = self.value
        if not isinstance(v, str) or len(v) > max_len:
            self.fail(f"must be a string of at most {max_len} characters, got {self._got()}")
        if choices is not None and v not in choices:
            self.fail(f"must be one of {', '.join(map(repr, choices))}, got {v!r}")
        if pattern is not None and not pattern.fullmatch(v):
            self.fail(f"must match {pattern.pattern}, got {v!r}")
        return v

    def name(self) -> str:
        """A tensor, graph or state name: letters, digits, '_', '.', '-', at most 64 characters."""
        return self.str(pattern=NAME, max_len=64)

    def opaque(self) -> Any:
        """A free-form value pixelrt records but never interprets (provenance, measurements): any JSON
        already bounded by the parser; returned as it is."""
        return self.value


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"the number {text[:24]} overflows to infinity")
    return v


def _no_duplicates(pairs: list) -> dict:
    if len(pairs) > MAX_ITEMS:
        raise ValueError(f"an object with {len(pairs)} keys (at most {MAX_ITEMS})")
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"the key {k!r} appears twice in one object")
        out[k] = v
    return out


def _depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, str) and len(v) > MAX_STRING * 16:
            raise ValueError(f"a string of {len(v)} characters (at most {MAX_STRING * 16})")
        if isinstance(v, (dict, list)):
            if d > limit:
                return False
            if len(v) > MAX_ITEMS:
                raise ValueError(f"a container with {len(v)} entries (at most {MAX_ITEMS})")
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return True


def read_document(path: Path, fmt: str, what: str, error: type[Exception], fix: str) -> Field:
    """Parse the JSON document at ``path`` within the bounds above and check its ``format``;
    the root :class:`Field`. Every problem is one ``error`` naming the file and ``fix``."""
    where = str(path)
    try:
        size = os.stat(path).st_size
        if size > MAX_DOCUMENT_BYTES:
            raise error(f"{where} is {size} bytes, larger than any {what} ({MAX_DOCUMENT_BYTES >> 20} MiB at most); "
                        f"it is not a pixelrt {what}; {fix}")
        with open(path, "rb") as f:
            data = f.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as e:
        raise error(f"{where} cannot be read ({e.strerror or e}); check its permissions, or {fix}") from None
    return parse_document(data, where, fmt, what, error, fix)


def parse_document(data: bytes, where: str, fmt: str, what: str, error: type[Exception], fix: str) -> Field:
    """:func:`read_document` on bytes already read (and verified) by the caller."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise error(f"{where} is larger than any {what}; {fix}")
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float,
                         object_pairs_hook=_no_duplicates)
        if not _depth_ok(doc, MAX_DEPTH):
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    except RecursionError:
        raise error(f"{where} is corrupt (not valid JSON: nested too deeply); {fix}") from None
    except (UnicodeDecodeError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        raise error(f"{where} is corrupt (not valid JSON: {e}); {fix}") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise error(f"{where} is not a pixelrt {what} (format is not {fmt!r}); {fix}")
    return Field(doc, "", where, error, fix)
