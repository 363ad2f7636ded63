"""TensorRT engine cache: one engine per (graph, GPU, TensorRT version, build options), built once.

A serialized engine only runs on the GPU model and TensorRT version that built it, so the cache key
is the sha256 of the ONNX file, the GPU name, its compute capability, the TensorRT version and the
build options (profile, batch range, workspace, DLA core, TF32, ...). Each entry is two files:

    <graph>-<key>.engine   the serialized engine
    <graph>-<key>.json     what it was built from and for, and the engine's own sha256

Both are written atomically (:func:`pixelrt.atomic.atomic_write_bytes`), the engine first; the
JSON is the commit mark, so a build killed half-way leaves no entry. A per-entry file lock
(``fcntl.flock``) makes a second process that wants the same engine wait for the first one's build
and then load it, instead of building it twice. An entry whose record does not match this machine
(copied from another GPU or TensorRT version), or whose engine bytes do not match their sha256, is
rebuilt with a message and never loaded. The builder is injected, so all of this is tested without
a GPU.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from pixelrt.atomic import atomic_write_bytes
from pixelrt.errors import PixelrtError
from pixelrt.bundle import sha256_file

CACHE_ENV = "PIXELRT_ENGINE_CACHE"
RECORD_FORMAT = "pixelrt-trt-engine"


@dataclass(frozen=True)
class DeviceInfo:
    """What an engine is tied to: the GPU model, its compute capability and the TensorRT version."""

    gpu: str
    compute_capability: str  # "8.7"
    tensorrt: str


def default_cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pixelrt" / "engines"


def engine_key(onnx_sha256: str, device: DeviceInfo, options: dict) -> str:
    """20 hex digits of sha256 over the canonical JSON of everything an engine depends on."""
    doc = {"onnx_sha256": onnx_sha256, "device": asdict(device), "options": options}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]


class EngineCache:
    """get_or_build(onnx, options, build) -> engine bytes, from the cache or built once under a lock.

    device: the machine's DeviceInfo (from the TensorRT backend, or a fake in tests).
    log: receives one line per notable event (built, reused, rejected, waiting).
    """

    def __init__(self, device: DeviceInfo, root: str | os.PathLike | None = None, log: Callable = print,
                 lock_timeout: float = 3600.0):
        self.device, self.log, self.lock_timeout = device, log, lock_timeout
        self.root = Path(root) if root is not None else default_cache_root()

    def paths(self, onnx_path: str | os.PathLike, options: dict) -> tuple[Path, Path, dict]:
        onnx_path = Path(onnx_path)
        record = {"format": RECORD_FORMAT, "onnx": onnx_path.name, "onnx_sha256": sha256_file(onnx_path),
                  "device": asdict(self.device), "options": options}
        key = engine_key(record["onnx_sha256"], self.device, options)
        stem = self.root / f"{onnx_path.stem}-{key}"
        return stem.with_suffix(".engine"), stem.with_suffix(".json"), {**record, "key": key}

    def get_or_build(self, onnx_path: str | os.PathLike, options: dict,
                     build: Callable[[Path, dict], bytes]) -> bytes:
        engine, meta, record = self.paths(onnx_path, options)
        data = self._load(engine, meta, record)
        if data is not None:
            return data
        self._explain_foreign(record)
        self.root.mkdir(parents=True, exist_ok=True)
        with _file_lock(engine.with_suffix(".lock"), self.lock_timeout, self.log):
            data = self._load(engine, meta, record, quiet=True)  # another process may have built it meanwhile
            if data is not None:
                return data
            t0 = time.perf_counter()
            data = build(onnx_path if hasattr(onnx_path, "read") else Path(onnx_path), options)  # GraphFile: verified bytes
            if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
                raise PixelrtError(f"building a TensorRT engine for {Path(onnx_path).name} produced nothing; "
                                   "see TensorRT's log above (run `pixelrt doctor BUNDLE --target tensorrt`)")
            data = bytes(data)
            atomic_write_bytes(engine, data)
            done = {**record, "engine_sha256": hashlib.sha256(data).hexdigest(), "engine_bytes": len(data),
                    "build_seconds": round(time.perf_counter() - t0, 2),
                    "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            atomic_write_bytes(meta, (json.dumps(done, indent=2, sort_keys=True) + "\n").encode())
        self.log(f"engine cache: built {engine.name} ({len(data) / 2**20:.1f} MiB, {done['build_seconds']} s)")
        return data

    def _load(self, engine: Path, meta: Path, record: dict, quiet: bool = False) -> bytes | None:
        if not meta.is_file():
            return None
        try:
            saved = json.loads(meta.read_text())
        except (OSError, ValueError):
            self.log(f"engine cache: {meta.name} is unreadable; rebuilding the engine")
            return None
        for what in ("onnx_sha256", "device", "options"):
            if saved.get(what) != record[what]:
                self.log(f"engine cache: {engine.name} was built for a different {what} "
                         f"({_short(saved.get(what))} vs {_short(record[what])}); engines are not portable, "
                         "rebuilding it, never loading it")
                return None
        try:
            data = engine.read_bytes()
        except OSError:
            self.log(f"engine cache: {engine.name} is missing next to its record; rebuilding it")
            return None
        if hashlib.sha256(data).hexdigest() != saved.get("engine_sha256"):
            self.log(f"engine cache: {engine.name} does not match its recorded sha256 (truncated or changed); "
                     "rebuilding it")
            return None
        if not quiet:
            self.log(f"engine cache: reusing {engine.name}")
        return data

    def _explain_foreign(self, record: dict) -> None:
        """Say so when engines of this very graph exist for another GPU or TensorRT version."""
        for other in self.records():
            if other.get("onnx_sha256") == record["onnx_sha256"] and other.get("device") != record["device"]:
                d, here = other["device"], record["device"]
                self.log(f"engine cache: found {other.get('onnx')} built on {d.get('gpu')} (sm {d.get('compute_capability')}) "
                         f"with TensorRT {d.get('tensorrt')}; this is {here['gpu']} (sm {here['compute_capability']}) "
                         f"with TensorRT {here['tensorrt']}: engines are not portable, building one here")
                return

    def records(self) -> list[dict]:
        out = []
        for path in sorted(self.root.glob("*.json")) if self.root.is_dir() else []:
            try:
                rec = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if rec.get("format") == RECORD_FORMAT:
                out.append(rec)
        return out


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


@contextmanager
def _file_lock(path: Path, timeout: float, log: Callable) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (fcntl.flock), polled so a waiter can say what it waits for.

    The kernel drops the lock when its holder dies, so a crashed build never blocks the next one.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock, say so once and build anyway
        log("engine cache: no fcntl on this platform; two processes may build the same engine at once")
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        start, told = time.monotonic(), False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                    log(f"engine cache: waiting for {holder} to finish building {path.stem}")
                    told = True
                if time.monotonic() - start > timeout:
                    raise PixelrtError(f"timed out after {timeout:.0f} s waiting for the engine build lock {path}; "
                                       "if no build is running, delete that file") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
