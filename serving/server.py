"""A real Triton Inference Server on this machine: the ``tritonserver`` binary that ``nvidia-pytriton`` ships.

Why the environment is built here and not left to the shell (measured on this machine):

* pytriton's wheel keeps the Python backend's stub per Python version (``python_backend_stubs/3.11/``); Triton
  looks for it next to ``libtriton_python.so``, so a private backend directory is assembled per server.
* The stub links whichever ``libpython3.11.so.1.0`` the loader finds first (the system's 3.11.2 here) while
  importing the running interpreter's standard library (3.11.7 here); model load then fails with
  ``'_thread.RLock' object has no attribute '_recursion_count'``. The running interpreter's ``LIBDIR`` goes first
  on ``LD_LIBRARY_PATH``, then the wheel's bundled libraries (``nvidia_pytriton.libs``: libcudart and friends,
  which the stub needs even on a CPU-only box).
* The stub finds its ``site-packages`` from the first ``python3`` on ``PATH``, so the running interpreter's
  ``bin`` goes first (a virtual environment's pixelrt, numpy and onnxruntime are then importable).
* pytriton 0.7's stub is built against numpy 1: with numpy 2 in its environment every output tensor arrives
  empty (``output tensor shape does not match size of output``; inputs still read fine). ``pip install
  pixelrt[serve]`` resolves numpy<2 (pytriton pins it). An environment that keeps numpy 2 for everything else
  gives the stub its own numpy 1 (:func:`stub_python`); ORT and pixelrt give bit-identical
  samples under both (measured).

The server binds loopback only unless told otherwise, on free ports, and is stopped with SIGTERM (then SIGKILL).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

from pixelrt.errors import PixelrtError

INSTALL = "pip install 'pixelrt[serve]' (brings nvidia-pytriton's tritonserver and tritonclient)"


def triton_dist() -> Path:
    """The folder of pytriton's tritonserver distribution (bin/, backends/, python_backend_stubs/)."""
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise PixelrtError(f"no tritonserver here: {INSTALL}")
    dist = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    if not (dist / "bin" / "tritonserver").is_file():
        raise PixelrtError(f"{dist} has no bin/tritonserver; reinstall: {INSTALL}")
    return dist


def available() -> str | None:
    """None when a tritonserver with a Python backend stub for this interpreter is here, else the reason."""
    try:
        dist = triton_dist()
    except PixelrtError as e:
        return str(e)
    stub = dist / "python_backend_stubs" / f"{sys.version_info[0]}.{sys.version_info[1]}" / "triton_python_backend_stub"
    return None if stub.is_file() else f"{dist} has no Python backend stub for Python {sys.version.split()[0]}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


NUMPY1 = Path(os.environ.get("PIXELRT_TRITON_NUMPY1", Path.home() / ".cache" / "pixelrt" / "triton-numpy1"))


def _numpy1() -> Path | None:
    """None when this environment's numpy already suits the stub (< 2); else the folder holding a numpy 1."""
    import numpy

    if int(numpy.__version__.split(".")[0]) < 2:
        return None
    if (NUMPY1 / "numpy" / "__init__.py").is_file():
        return NUMPY1
    raise PixelrtError(f"this environment has numpy {numpy.__version__}, but the Python-backend stub of "
                       "nvidia-pytriton 0.7 is built against numpy 1 and sends empty outputs with numpy 2. Either "
                       "pip install 'numpy<2' (what pip install 'pixelrt[serve]' resolves), or give the stub its "
                       f"own: {sys.executable} -m pip install --target {NUMPY1} 'numpy<2' "
                       "(folder: PIXELRT_TRITON_NUMPY1)")


def stub_python(work: Path) -> Path:
    """The ``bin`` folder whose ``python3`` the stub takes its environment from (it ignores PYTHONPATH).

    Normally the running interpreter's. With numpy 2 here: a two-file virtual environment in ``work`` whose
    site-packages has one .pth putting the numpy 1 folder first and then this environment's site-packages (its
    own .pth files included, so an editable pixelrt still imports)."""
    numpy1 = _numpy1()
    if numpy1 is None:
        return Path(sys.executable).parent
    import site

    env = work / "stub-env"
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    packages = env / "lib" / version / "site-packages"
    packages.mkdir(parents=True)
    (env / "bin").mkdir()
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    os.symlink(base, env / "bin" / "python3")
    (env / "pyvenv.cfg").write_text(f"home = {base.parent}\ninclude-system-site-packages = false\n"
                                    f"version = {sys.version.split()[0]}\n")
    ours = [p for p in site.getsitepackages() if p.startswith(sys.prefix)]
    lines = [str(numpy1)] + [f"import site; site.addsitedir({p!r})" for p in ours]
    (packages / "00-pixelrt-triton.pth").write_text("\n".join(lines) + "\n")
    return env / "bin"


def server_env(work: Path) -> dict:
    dist = triton_dist()
    libs = [sysconfig.get_config_var("LIBDIR") or "", str(dist.parent.parent / "nvidia_pytriton.libs")]
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join([p for p in libs if p] + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
    env["PATH"] = str(stub_python(work)) + os.pathsep + env.get("PATH", "")
    return env


def backend_directory(work: Path) -> Path:
    """backends/python/ = pytriton's libtriton_python.so + utils + the stub for this Python version."""
    reason = available()
    if reason:
        raise PixelrtError(f"cannot start Triton: {reason}; {INSTALL}")
    dist = triton_dist()
    out = work / "backends"
    shutil.copytree(dist / "backends" / "python", out / "python", ignore=shutil.ignore_patterns("__pycache__"))
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    shutil.copy2(dist / "python_backend_stubs" / version / "triton_python_backend_stub", out / "python")
    return out


class TritonServer:
    """``with TritonServer(repo) as s: s.http_url`` -- started, ready, and stopped on exit (``repo``: one model
    repository or a list of them).

    ``log``: where the server's output goes (a file path; default: a file in its work folder, shown in errors)."""

    def __init__(self, repository, host: str = "127.0.0.1", http_port: int | None = None,
                 grpc_port: int | None = None, log: str | os.PathLike | None = None, verbose: bool = False):
        self.repositories = [Path(r) for r in (repository if isinstance(repository, (list, tuple)) else [repository])]
        self.repository = self.repositories[0]
        self.host = host
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self.work = Path(tempfile.mkdtemp(prefix="pixelrt-triton-"))
        self.log_path = Path(log) if log else self.work / "tritonserver.log"
        self.verbose = verbose
        self.process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.host}:{self.grpc_port}"

    def command(self) -> list[str]:
        return [str(triton_dist() / "bin" / "tritonserver"), *(f"--model-repository={r}" for r in self.repositories),
                f"--backend-directory={backend_directory(self.work)}",
                f"--http-address={self.host}", f"--http-port={self.http_port}",
                f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
                "--allow-metrics=false", "--exit-timeout-secs=5", "--strict-readiness=true",
                f"--log-verbose={1 if self.verbose else 0}"]

    def start(self, timeout: float = 120.0) -> "TritonServer":
        for r in self.repositories:
            if not r.is_dir():
                raise PixelrtError(f"{r} is not a folder; write a repository with `pixelrt triton`")
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=server_env(self.work),
                                        start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code, tail = self.process.returncode, self.log_tail()
                self.stop(keep_log=True)
                raise PixelrtError(f"tritonserver exited with status {code} while loading "
                                   f"{', '.join(map(str, self.repositories))}:\n{tail}")
            if self.ready():
                return self
            time.sleep(0.25)
        tail = self.log_tail()
        self.stop(keep_log=True)
        raise PixelrtError(f"tritonserver was not ready after {timeout:.0f} s:\n{tail}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 15) -> str:
        """The server log's error lines (Triton's ``E<date>``), else its last lines; and where the log is."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        errors = [line for line in text if re.match(r"E\d{4} ", line) or "Error" in line or "error:" in line]
        return "\n".join((errors or text)[-lines:]) + f"\n(full log: {self.log_path})"

    def stop(self, timeout: float = 15.0, keep_log: bool = False) -> None:
        """SIGTERM the server's session (SIGKILL after ``timeout``); remove the work folder, except the log when
        ``keep_log`` (a failed start) or when the log was given elsewhere."""
        p, self.process = self.process, None
        if p is not None:
            _signal_session(p.pid, signal.SIGTERM)  # its own session: the server and its Python-backend stubs
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_session(p.pid, signal.SIGKILL)
                p.wait(5)
        for entry in (self.work.iterdir() if self.work.is_dir() else []):
            if not (keep_log and entry == self.log_path):
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
        if self.work.is_dir() and not any(self.work.iterdir()):
            self.work.rmdir()

    def __enter__(self) -> "TritonServer":
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_session(pid: int, sig) -> None:
    """Signal the server's process group (its stubs too); nothing left of it is not an error."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def serve_bundle(bundle, work, name: str | None = None, **kwargs):
    """Write a Python-backend repository for ``bundle`` under ``work`` and return (Repository, TritonServer).

    pytriton's server carries only the Python backend, so the likelihood model runs full.onnx in pixelrt's ORT
    runtime there (the same graph the ORT backend would run in a container)."""
    from pixelrt.serving.repository import write_repository

    server_opts = {k: kwargs.pop(k) for k in ("host", "http_port", "grpc_port", "log", "verbose") if k in kwargs}
    repo = write_repository(bundle, Path(work) / "repository", name, likelihood_backend="python", overwrite=True,
                            **kwargs)
    return repo, TritonServer(repo.root, **server_opts)
