"""Atomic writes: an output appears whole or not at all, and a replaced one is never lost.

Directories (a bundle, a checkpoint) are built in a hidden sibling ``.NAME.tmp-PID-XXXX`` and moved
into place only when complete. Replacing an existing one is a single atomic exchange of the two
directories (Linux ``renameat2(RENAME_EXCHANGE)``); where the file system lacks it, the old one is
first renamed to ``.NAME.old-PID-XXXX`` and the next run on that target (or any later write to it)
puts it back if a kill left the target missing (:func:`recover`). ``--force`` replaces only what
pixelrt wrote (a bundle or a checkpoint it recognises), never the command's own input, never a file,
a device or a symbolic link.

Files (PNG, npz, JSON, an engine) go through a unique temporary sibling, fsync and ``os.replace``;
the target must be a regular file or absent. Scratch folders in the temp directory carry the owner's
pid, so one left by a killed process is swept by the next (:func:`sweep_scratch`).
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from pixelrt.errors import PixelrtError

MARKERS = {"manifest.json": "pixelrt-bundle", "checkpoint.json": "pixelrt-checkpoint"}
SCRATCH = "pixelrt-scratch-"
_RENAME_EXCHANGE = 2


def pixelrt_output(path: Path) -> str | None:
    """'bundle' / 'checkpoint' when ``path`` is a folder pixelrt wrote, else None (judged by its JSON marker)."""
    for name, fmt in MARKERS.items():
        marker = path / name
        if marker.is_file() and not marker.is_symlink():
            try:
                doc = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError, UnicodeDecodeError):
                continue
            if isinstance(doc, dict) and doc.get("format") == fmt:
                return fmt.split("-", 1)[1]
    return None


def _pid_of(name: str, stem: str) -> int | None:
    """The pid in '.NAME.tmp-PID-HEX' / 'pixelrt-scratch-PID-...', or None."""
    rest = name[len(stem):]
    pid = rest.split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def recover(target: Path) -> None:
    """Undo what a killed writer left next to ``target``: restore a moved-away old version if the target is
    missing, and remove temporary and old siblings whose writer is dead."""
    parent = target.parent
    if not parent.is_dir():
        return
    for kind in ("old", "tmp"):
        stem = f".{target.name}.{kind}-"
        for sibling in sorted(parent.glob(f"{_glob_escape(stem)}*")):
            if _alive(_pid_of(sibling.name, stem)):
                continue
            if kind == "old" and not os.path.lexists(target):
                os.rename(sibling, target)  # the replace was killed between its two renames: put it back
            else:
                shutil.rmtree(sibling, ignore_errors=True)


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the platform or file system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _same_or_inside(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or b in a.parents or a in b.parents


def check_replaceable(target: str | os.PathLike, overwrite: bool, protect: Iterable = (),
                      accept: Callable[[Path], bool] | None = None, what: str = "output") -> None:
    """Refuse, before any work, an output folder that must not be replaced. ``protect``: the command's inputs."""
    target = Path(target)
    for p in protect:
        if p is not None and _same_or_inside(target, Path(p)):
            raise PixelrtError(f"-o {target} is, contains or lies inside the command's input {p}; write the "
                               f"{what} somewhere else")
    if os.path.islink(target):
        raise PixelrtError(f"{target} is a symbolic link; give the folder itself, or another path")
    if not os.path.lexists(target):
        return
    if not target.is_dir():
        raise PixelrtError(f"{target} already exists and is not a folder; choose another path for the {what}")
    if not overwrite:
        raise PixelrtError(f"{target} already exists; choose another path or pass --force to replace it")
    empty = not any(target.iterdir())
    ok = accept(target) if accept is not None else pixelrt_output(target) is not None
    if not (empty or ok):
        raise PixelrtError(f"{target} is not a pixelrt {what} (no pixelrt manifest.json or checkpoint.json in it); "
                           "--force only replaces what pixelrt wrote, so choose another path or remove it yourself")


@contextmanager
def atomic_directory(target: str | os.PathLike, overwrite: bool = False, protect: Iterable = (),
                     accept: Callable[[Path], bool] | None = None, what: str = "output") -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``target`` when the block succeeds."""
    target = Path(target)
    recover(target)
    check_replaceable(target, overwrite, protect, accept, what)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()  # inside the try: a signal right after it still removes the folder
        yield tmp
        if os.path.lexists(target):
            check_replaceable(target, True, (), accept, what)  # it may have changed while we worked
            if _exchange(tmp, target):
                shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous version
            else:
                _replace_by_renames(tmp, target)
        else:
            os.rename(tmp, target)
        _fsync_dir(target.parent)
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _replace_by_renames(tmp: Path, target: Path) -> None:
    """Two renames; a kill between them leaves ``.NAME.old-PID-*`` that :func:`recover` puts back."""
    old = target.parent / f".{target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)  # put the previous version back before reporting
        raise
    shutil.rmtree(old, ignore_errors=True)


def check_file_target(path: str | os.PathLike, protect: Iterable = ()) -> Path:
    """An output file path that may be written: absent or a regular file, not an input, parent creatable."""
    path = Path(path)
    for p in protect:
        if p is not None and (path.resolve() == Path(p).resolve() or Path(p).resolve() in path.resolve().parents):
            raise PixelrtError(f"{path} is or lies inside the command's input {p}; write it somewhere else")
    if os.path.isdir(path):
        raise PixelrtError(f"{path} is a folder; give a file path, e.g. {path / 'out'}")
    if os.path.lexists(path) and not os.path.islink(path) and not path.is_file():
        raise PixelrtError(f"{path} exists and is not a regular file (a device, a pipe or a socket); "
                           "pixelrt never replaces those: choose a file path")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise PixelrtError(f"cannot write {path}: {parent} is a file, not a folder")
            break
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, protect: Iterable = ()) -> Path:
    """Write ``data`` to ``path`` through a unique temporary sibling and ``os.replace``: readers see the old
    file or the whole new one, never a partial write; a failure (a full disk) leaves the old file."""
    path = check_file_target(path, protect)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()
    return path


def sweep_scratch() -> int:
    """Remove scratch folders in the temp directory whose process is gone; returns how many."""
    root = Path(tempfile.gettempdir())
    removed = 0
    try:
        entries = list(root.glob(f"{SCRATCH}*"))
    except OSError:
        return 0
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink() and not _alive(_pid_of(entry.name, SCRATCH)):
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


@contextmanager
def scratch_directory(purpose: str) -> Iterator[Path]:
    """A temporary folder removed on exit (also on Ctrl-C / SIGTERM); a SIGKILLed one is swept next run."""
    path = Path(tempfile.mkdtemp(prefix=f"{SCRATCH}{os.getpid()}-{purpose}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def is_bundle(path: Path) -> bool:
    return pixelrt_output(path) == "bundle"


def is_checkpoint(path: Path) -> bool:
    return pixelrt_output(path) == "checkpoint"
