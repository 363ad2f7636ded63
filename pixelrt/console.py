"""What a command prints and where: results on stdout, diagnostics through ``logging`` on stderr.

* ``-q`` keeps only warnings and errors (and the results), ``-v`` adds pixelrt's debug lines,
  ``-vv`` lets third-party libraries speak too (ONNX Runtime's C++ log, their Python loggers and
  warnings); by default they are kept out of the user's output.
* ``--json -`` writes the JSON report to stdout; the human-readable lines then go to stderr so that
  stdout is one JSON document a pipe can read.
* Progress bars show only on a terminal and never with ``-q`` or ``--no-progress``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import sys
import warnings

log = logging.getLogger("pixelrt")

_state = {"quiet": False, "stdout": None}


class _Handler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (pytest and redirections swap it)."""

    def __init__(self):
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # logging.StreamHandler assigns it in __init__; always use sys.stderr
        pass


def configure(verbose: int = 0, quiet: bool = False) -> None:
    """Set pixelrt's log level and silence third-party chatter unless -vv asks for it."""
    _state["quiet"] = quiet
    if not any(isinstance(h, _Handler) for h in log.handlers):
        log.addHandler(_Handler())
    log.propagate = False
    log.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    third_party = logging.INFO if verbose >= 2 else logging.ERROR
    logging.getLogger().setLevel(third_party)
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.WARNING if verbose >= 2 else logging.ERROR)
    if verbose < 2:
        warnings.filterwarnings("ignore", module="onnxruntime")
        warnings.filterwarnings("ignore", module="torch")
        try:
            import onnxruntime

            onnxruntime.set_default_logger_severity(3)  # errors only from its C++ logger
        except ImportError:
            pass


def progress(args=None) -> bool:
    """Whether to draw progress bars: a terminal on stderr, not -q, not --no-progress."""
    if _state["quiet"] or (args is not None and getattr(args, "no_progress", False)):
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


@contextlib.contextmanager
def json_to_stdout(dest: str | None):
    """With ``--json -`` the human lines go to stderr while the command runs; the JSON goes to the real stdout."""
    if dest != "-":
        yield
        return
    _state["stdout"] = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _state["stdout"] = None


def emit_json(dest: str | None, doc, protect=()) -> None:
    """Write ``doc`` as JSON to ``dest``: '-' for stdout, else a file written atomically."""
    if not dest:
        return
    text = json.dumps(doc, indent=2, default=_jsonable) + "\n"
    if dest == "-":
        out = _state["stdout"] or sys.stdout
        out.write(text)
        out.flush()
        return
    from pixelrt.atomic import atomic_write_bytes

    atomic_write_bytes(dest, text.encode(), protect=protect)


def _jsonable(value):
    """numpy scalars and arrays, Paths: what reports hold besides plain JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


class Steps:
    """The ``log`` callable a long command hands to export / calibrate / train: each message is one step.

    On a terminal it is a progress bar whose description is the current step (steps done so far counted);
    elsewhere (a pipe, a CI log, -q) each step is one INFO line through the ``pixelrt`` logger on stderr.
    """

    def __init__(self, what: str, args=None):
        self.bar = None
        if progress(args):
            from tqdm import tqdm

            self.bar = tqdm(desc=what, unit="step", leave=False, bar_format="{desc}: {n_fmt} steps [{elapsed}]")

    def __call__(self, message: str) -> None:
        if self.bar is None:
            log.info(message)
            return
        self.bar.set_description_str(message[:70])
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
