"""What every measurement shares: timers that repeat only while cheap, the load average,
threads, a temporary bundle and the JSON records. Bench is measurement, not a test: nothing here raises on
a slow result."""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from pixelrt.errors import PixelrtError


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _best_of(fn, repeats: int, budget_s: float, span_s: float = 0.0, most: int = 40) -> float:
    """Min over up to ``repeats`` runs, stopping once another run would exceed ``budget_s``. With ``span_s``,
    cheap runs go on (up to ``most``) until they span that many seconds: on a shared host a burst of load
    can cover a handful of 10 ms runs, not a second of them."""
    times = [_timed(fn)]
    while (len(times) < repeats or sum(times) < span_s) and len(times) < most and sum(times) + times[-1] <= budget_s:
        times.append(_timed(fn))
    return min(times)


def _load() -> float:
    """1-minute load average (0 where the OS has none): a busy machine skews these timings."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def set_threads(threads: int | None) -> None:
    """--threads pins PyTorch's intra-op threads (ORT sessions take it as ``threads=``); None: the default."""
    if threads is None:
        return
    if threads < 1:
        raise PixelrtError(f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def random_images(image, n: int, seed: int = 0) -> np.ndarray:
    """``n`` uint8 images of ``image`` (a reference batch for the bench bundle: timing does not depend on it)."""
    return np.random.default_rng(seed).integers(0, image.levels, (n, *image.shape)).astype(np.uint8)


def export_temporary(model, image, x_ref: np.ndarray, root: Path, name: str):
    """The bench model as a bundle under ``root`` (validated by the exporter, as every bundle is)."""
    from pixelrt.export import export_bundle

    return export_bundle(model, image, x_ref, Path(root) / name, log=lambda s: None).bundle


def _write_json_atomic(path: Path, records: list[dict]) -> None:
    """tmp file in the same directory + os.replace: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(records, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_records(json_path, records: list[dict], log) -> None:
    if json_path is not None:
        _write_json_atomic(Path(json_path), records)
        log(f"wrote {len(records)} records to {json_path}")
