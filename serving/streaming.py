"""Finished raster rows out of a running step loop, for the decoupled sampling model (torch-free).

The step loop (``runtime/sampler.py``) calls the step graph over the pixels in raster order, S sub-steps per
pixel, and keeps the sampled values to itself until the loop ends. :class:`RowTap` wraps the step backend and
reads every call's ``value`` and ``logp`` as they come out, so after W * S calls row i is complete and is handed
on (``on_row(i, values (B, C, W) uint8, logp (B, C, W) float32)``) while the loop goes on with row i + 1. It
changes nothing the loop computes: the same backend runs the same feeds (its ``bind`` fast path included), and the
tap only copies outputs. A backend that runs the whole loop itself (TensorRT's ``bundle_loop``) cannot be tapped;
the model then sends only the final response.
"""
from __future__ import annotations

import numpy as np


class RowTap:
    def __init__(self, runner, image, schedule, on_row):
        self.runner, self.on_row = runner, on_row
        self.C, self.H, self.W = image.shape
        self.S = schedule.substeps_per_pixel
        self.cps = self.C // self.S
        self.calls = 0
        self.values = self.logp = None
        names = getattr(runner, "input_names", None)
        if names is not None:
            self.input_names = names
        elif getattr(runner, "inputs", None):
            self.inputs = runner.inputs

    def _tap(self, out: dict) -> None:
        value = np.asarray(out["value"])
        B = value.shape[0]
        if self.values is None or self.values.shape[0] != B:
            self.values = np.zeros((B, self.C, self.W), np.uint8)
            self.logp = np.zeros((B, self.C, self.W), np.float32)
        s, j = self.calls % self.S, (self.calls // self.S) % self.W
        i = self.calls // (self.S * self.W)
        ch = slice(s * self.cps, (s + 1) * self.cps)
        self.values[:, ch, j] = value.reshape(B, self.cps)
        self.logp[:, ch, j] = np.asarray(out["logp"]).reshape(B, self.cps)
        self.calls += 1
        if self.calls % (self.S * self.W) == 0:
            self.on_row(i % self.H, self.values.copy(), self.logp.copy())

    def infer(self, feeds, check: bool = False):
        out = self.runner.infer(feeds, check=check)
        self._tap(out)
        return out

    def bind(self, feeds, batch):
        """The wrapped backend's bound fast path (ORT CPU), with every call's outputs tapped."""
        bind = getattr(self.runner, "bind", None)
        bound = bind(feeds, batch) if callable(bind) else None
        if bound is None:
            return None
        call = bound[0]

        def tapped():
            out = call()
            self._tap(out)
            return out

        return (tapped, *bound[1:])
