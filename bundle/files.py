"""Containment and checksums: every file a bundle or checkpoint uses lies inside it and is the one
its manifest lists.

A name from a manifest is resolved inside the bundle's real directory (symlinks followed); it must
stay inside, be a regular file, have the listed size and the listed sha256. The bytes that were
hashed are the bytes that get used (:func:`read_verified`), so a file swapped after the check is
never run. Torch-free, standard library only.
"""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def contained(root: Path, name: str, error: type[Exception], fix: str, what: str = "bundle",
              missing: str | None = None) -> Path:
    """The real path of ``name`` inside ``root``; ``error`` when it leaves ``root`` (through '..', an
    absolute name or a symlink), is missing, or is not a regular file."""
    base = os.path.realpath(root)
    if os.path.isabs(name) or "\\" in name or ".." in Path(name).parts:
        raise error(f"{root}: the {what} names {name!r}, a path outside it; {fix}")
    real = os.path.realpath(os.path.join(base, name))
    if os.path.commonpath([real, base]) != base:
        raise error(f"{root / name} is a symlink to {real}, outside the {what}; a {what} must hold its own "
                    f"files: {fix}")
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise error(missing or f"{what} manifest lists {name} but the file is missing from {root}; {fix}") from None
    except OSError as e:
        raise error(f"{root / name} cannot be read ({e.strerror or e}); {fix}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{root / name} is not a regular file (a directory, device or pipe); {fix}")
    return Path(real)


def read_verified(root: Path, name: str, sha256: str, size: int, error: type[Exception], fix: str,
                  what: str = "bundle") -> bytes:
    """The bytes of ``name`` inside ``root``, after checking their size and sha256 against the listing."""
    path = contained(root, name, error, fix, what)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise error(f"{root / name} is not a regular file; {fix}")
            if st.st_size != size:
                raise error(f"{root / name}: sha256 mismatch (the file is {st.st_size} bytes, the manifest lists "
                            f"{size}); the file was changed or truncated after export; {fix}")
            data = f.read(size + 1)
    except OSError as e:
        raise error(f"{root / name} cannot be read ({e.strerror or e}); {fix}") from None
    digest = sha256_bytes(data)
    if len(data) != size or digest != sha256:
        raise error(f"{root / name}: sha256 mismatch (manifest {sha256[:12]}..., file {digest[:12]}...); the file "
                    f"was changed or truncated after export; {fix}")
    return data


def verify_file(root: Path, name: str, sha256: str, size: int, error: type[Exception], fix: str,
                what: str = "bundle") -> Path:
    """Check ``name`` like :func:`read_verified` without keeping its bytes (large weight files)."""
    path = contained(root, name, error, fix, what)
    try:
        st = os.stat(path)
        if st.st_size != size:
            raise error(f"{root / name}: sha256 mismatch (the file is {st.st_size} bytes, the manifest lists {size}); "
                        f"the file was changed or truncated after export; {fix}")
        digest = sha256_file(path)
    except OSError as e:
        raise error(f"{root / name} cannot be read ({e.strerror or e}); check its permissions, or {fix}") from None
    if digest != sha256:
        raise error(f"{root / name}: sha256 mismatch (manifest {sha256[:12]}..., file {digest[:12]}...); the file "
                    f"was changed or truncated after export; {fix}")
    return path
