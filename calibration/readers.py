"""Calibration data readers built from real images, for onnxruntime.quantization.

* full graph: uint8 image batches, fed as ``x``.
* step graph: the feeds the step loop really sends -- states, position, partial
  pixel, forced value, noise -- recorded while it runs teacher-forced on
  calibration images. :class:`RecordingRunner` wraps any backend with the same
  ``infer(feeds, check=...)`` contract and keeps a deterministic subsample of the
  steps (copies: the loop updates its state arrays in place).

Both readers are generic over the bundle: names come from the manifest's graph
and state specs, and the step loop is the runtime's own.
"""
from __future__ import annotations

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from pixelrt.bundle import Bundle
from pixelrt.runtime.sampler import make_noise, step_loop


class FeedListReader(CalibrationDataReader):
    """Serves a fixed list of feed dicts; ``rewind`` lets several calibrators reuse it."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.feeds = feeds
        self._pos = 0

    def get_next(self):
        if self._pos >= len(self.feeds):
            return None
        self._pos += 1
        return self.feeds[self._pos - 1]

    def rewind(self) -> None:
        self._pos = 0

    def __len__(self) -> int:
        return len(self.feeds)


def image_feeds(bundle: Bundle, x: np.ndarray, batch_size: int = 64) -> list[dict[str, np.ndarray]]:
    """Full-graph feeds: the images in batches under the graph's (single) image input name."""
    (name,) = bundle.graphs["full"].input_names()
    return [{name: np.ascontiguousarray(x[lo:lo + batch_size])} for lo in range(0, len(x), batch_size)]


class RecordingRunner:
    """A backend wrapper that records a subsample of the step feeds it passes on."""

    def __init__(self, backend, keep_every: int, offset: int = 0):
        self.backend, self.keep_every, self.offset = backend, max(1, keep_every), offset
        self.calls = 0
        self.recorded: list[dict[str, np.ndarray]] = []

    def infer(self, feeds: dict[str, np.ndarray], check: bool = True) -> dict[str, np.ndarray]:
        if (self.calls - self.offset) % self.keep_every == 0:
            self.recorded.append({k: np.array(v, copy=True) for k, v in feeds.items()})
        self.calls += 1
        return self.backend.infer(feeds, check=check)


def step_feeds(bundle: Bundle, backend, x: np.ndarray, max_steps: int = 64, batch_size: int = 64,
               seed: int = 0, progress: bool = False) -> list[dict[str, np.ndarray]]:
    """Run the step loop teacher-forced on ``x`` through ``backend`` (an active FP32 step graph)
    and return up to ~``max_steps`` recorded feeds, spread evenly over the raster."""
    img = bundle.image
    batches = (len(x) + batch_size - 1) // batch_size
    total = img.dims * batches
    every = max(1, -(-total // max_steps))
    # An offset that is not a multiple of the sub-steps per pixel spreads the kept steps over channels.
    rec = RecordingRunner(backend, every, offset=(every // 2) % total)
    step_loop(rec, img, bundle.state, make_noise(len(x), img, seed), force=x, batch_size=batch_size,
              progress=progress, desc="recording step feeds")
    return rec.recorded
