"""How a command ends: one exit code per kind of outcome, one message per fault, no traceback.

Exit codes (docs/cli.md):

* 0  the command did what it says;
* 1  a parity or budget miss: the command ran, the measurement missed (``ParityError``);
* 2  a user or input error: a bad argument, an unreadable or malformed file, a missing extra, a full
  disk, anything the user can fix (``PixelrtError``, ``OSError``, ``MemoryError``);
* 3  an internal error: a bug in pixelrt; one line, the traceback only with ``--debug``;
* 130 / 143  interrupted by SIGINT / SIGTERM (temporary files are removed first);
* 141  the reader of stdout went away (``pixelrt ... | head``), as with SIGPIPE.

Torch-free: the CLI imports this before it knows which command runs.
"""
from __future__ import annotations

import errno
import logging
import signal
import sys
import traceback

from pixelrt.errors import ParityError, PixelrtError

OK, MISS, USER, INTERNAL = 0, 1, 2, 3
INTERRUPTED, BROKEN_PIPE, TERMINATED = 130, 141, 143

log = logging.getLogger("pixelrt")

# optional dependency -> (what it is, the extra that brings it)
EXTRAS = {
    "torch": ("PyTorch", "export"),
    "safetensors": ("safetensors", "export"),
    "onnxscript": ("onnxscript", "export"),
    "onnx": ("the onnx package", "calibrate"),
    "sklearn": ("scikit-learn", "data"),
    "onnxruntime": ("ONNX Runtime", "runtime"),
    "PIL": ("Pillow", "runtime"),
    "tqdm": ("tqdm", "runtime"),
    "tensorrt": ("TensorRT", "gpu"),
    "tritonclient": ("tritonclient", "serve"),
    "pytriton": ("nvidia-pytriton", "serve"),
}

_FIXES = {
    errno.ENOSPC: "the disk is full: free some space or write somewhere else",
    errno.EDQUOT: "the disk quota is exhausted: free some space or write somewhere else",
    errno.EACCES: "permission denied: check the file's permissions or choose another path",
    errno.EPERM: "operation not permitted: check the file's permissions or choose another path",
    errno.EROFS: "the file system is read-only: choose a writable path",
    errno.ENOENT: "no such file or folder: check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "it is a folder: give a file path",
    errno.ENAMETOOLONG: "the path is too long: choose a shorter one",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) and retry",
    errno.EIO: "an I/O error from the device: check the disk",
}


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every ``finally`` (temp folders, locks) runs."""


_SIGNALLED: list[int] = []  # signals that arrived, kept in case a library swallows the exception they raised


def _raise_terminated(signum, frame):  # pragma: no cover - exercised through a subprocess test
    _SIGNALLED.append(signum)
    raise Terminated()


def raise_if_signalled() -> None:
    """Re-raise a SIGTERM that arrived inside library code which caught its exception (torch.onnx's exporter
    catches every error of one capture strategy and tries the next, or wraps it in its own error): call
    after such a call, and where its error is handled."""
    if _SIGNALLED:
        raise Terminated()


def install_signal_handlers() -> None:
    """SIGTERM ends the command like Ctrl-C does: cleanup first, then exit 143."""
    try:
        signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread (e.g. main() called from a worker thread in a test)
        pass


def describe_os_error(e: OSError) -> str:
    """'PATH: what happened; the fix' for an OSError from the file system."""
    where = e.filename if e.filename is not None else ""
    if getattr(e, "filename2", None):
        where = f"{where} -> {e.filename2}"
    fix = _FIXES.get(e.errno, (e.strerror or str(e)).rstrip("."))
    return f"{where}: {fix}" if where else fix


def describe_missing_module(e: ModuleNotFoundError, command: str) -> str | None:
    """One line for an optional dependency this install lacks; None when it is not one of ours."""
    top = (e.name or "").split(".")[0]
    if top not in EXTRAS:
        return None
    what, extra = EXTRAS[top]
    return (f"`pixelrt {command}` needs {what}, which this install lacks; install it with "
            f"pip install 'pixelrt[{extra}]'")


def run(command: str, func, args, debug: bool = False) -> int:
    """Run ``func(args)`` and turn every way it can end into an exit code and at most one message."""
    prefix = f"pixelrt {command}"
    try:
        return func(args)
    except ParityError as e:
        print(f"{prefix}: {e}", file=sys.stderr)
        return MISS
    except PixelrtError as e:
        _debug_trace(debug)
        print(f"{prefix}: error: {e}", file=sys.stderr)
        return USER
    except ModuleNotFoundError as e:
        message = describe_missing_module(e, command)
        if message is None:
            return _internal(prefix, e, debug)
        _debug_trace(debug)
        print(f"{prefix}: error: {message}", file=sys.stderr)
        return USER
    except BrokenPipeError:  # `pixelrt ... | head`: the reader left; say nothing more
        _silence_stdout()
        return BROKEN_PIPE
    except OSError as e:
        _debug_trace(debug)
        print(f"{prefix}: error: {describe_os_error(e)}", file=sys.stderr)
        return USER
    except MemoryError:
        _debug_trace(debug)
        print(f"{prefix}: error: out of memory; ask for fewer images (-n) or a smaller --batch-size",
              file=sys.stderr)
        return USER
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted; partial outputs were removed", file=sys.stderr)
        return INTERRUPTED
    except Terminated:
        print(f"{prefix}: terminated; partial outputs were removed", file=sys.stderr)
        return TERMINATED
    except Exception as e:  # noqa: BLE001 - the last line of defence: no traceback without --debug
        return _internal(prefix, e, debug)


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
    except (OSError, ValueError, AttributeError):
        pass


def _debug_trace(debug: bool) -> None:
    if debug:
        traceback.print_exc()


def _internal(prefix: str, e: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    detail = " ".join(str(e).split())[:300]
    print(f"{prefix}: internal error: {type(e).__name__}: {detail}. This is a bug in pixelrt; rerun with --debug "
          "for the traceback and report it", file=sys.stderr)
    return INTERNAL
