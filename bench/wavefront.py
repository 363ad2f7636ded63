"""Wavefront sampling at batch 1, measured before adopting (issue 17): several pixels of one image per call.

In a PixelCNN whose receptive field in the rows above reaches r columns to the right (r = k0 // 2 for the
k0 x k0 input conv, k // 2 for the blocks; the largest counts), pixel (i, j) needs row i - 1 done up to
column j + r. So row i can run ``lag = r + 1`` pixels behind row i - 1, and at call t the pixels
(i, t - lag * i) of every row in reach are independent: W + lag * (H - 1) calls per image instead of H * W.

The step graph for it is the bundle's PixelCNN step (``models/pixelcnn_step.PixelCNNStep.trunk``, the same
arithmetic per pixel) with per-pixel positions: ``rows``, ``cols`` (P,) of the P pixels in flight, and
taller rings (rows + P_max - 1 slots, so the in-flight rows never overwrite a row another one still
reads). The pixels in flight are the graph's batch axis. It is a bench-only graph (like the naive sampler):
adopting it needs a new graph and state kind in the bundle contract (bundle/, export/, the TensorRT loop).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def lag_of(cfg) -> int:
    """Columns row i runs behind row i - 1: the furthest right reach into the row above, plus one."""
    return max(cfg.input_kernel // 2, cfg.block_kernel // 2) + 1


class WavefrontStep(nn.Module):
    """P pixels of one image per call, at positions (rows[p], cols[p]); caches (1, L, R, W + 2 pad, C)."""

    def __init__(self, step, width: int, in_flight: int):
        super().__init__()
        self.step, self.width = step, width
        self.rings = [s.rows + in_flight - 1 for s in (step.input_window.spec, step.block_windows.spec)]

    def _window(self, stack, cache, ring: int, rows, cols):
        spec = stack.spec
        wp = self.width + 2 * spec.pad
        slots = torch.remainder(rows[:, None] + stack.row_offsets[None, :], ring)  # rows r-pad..r -> slots
        index = (slots[:, :, None] * wp + cols[:, None, None] + stack.col_offsets[None, None, :]).reshape(-1)
        flat = cache.reshape(stack.layers, ring * wp, cache.shape[-1])  # (L, R*(W+2p), C)
        window = flat.index_select(1, index).reshape(stack.layers, rows.shape[0], -1)  # (L, P, rows*k*C)
        return window.transpose(0, 1)  # (P, L, K)

    def forward(self, rows, cols, force, noise, input_cache, block_cache):
        s = self.step
        w0 = self._window(s.input_window, input_cache, self.rings[0], rows, cols)
        w1 = self._window(s.block_windows, block_cache, self.rings[1], rows, cols)
        pixel = torch.zeros_like(rows).unsqueeze(1)  # one channel: no earlier channel of this pixel
        return s.trunk(pixel, w0, w1, torch.zeros_like(rows[0]), force, noise)


def export_wavefront(model, width: int, height: int, path: Path) -> tuple[WavefrontStep, int]:
    """The wavefront graph of ``model`` (one channel) to ONNX, its in-flight axis dynamic."""
    cfg = model.config
    if cfg.channels != 1:
        raise ValueError("the wavefront prototype handles one channel (one sub-step per pixel)")
    lag = lag_of(cfg)
    in_flight = min(height, -(-width // lag))
    step = model.step_module(_image(cfg, height, width))
    wave = WavefrontStep(step, width, in_flight).eval()
    shapes = [(1, st.shape[1], ring, st.shape[3], st.shape[4]) for st, ring in zip(step.states, wave.rings)]
    P = min(2, in_flight)
    args = (torch.arange(P), torch.arange(P), torch.full((P,), -1), torch.full((P,), 0.5),
            *(torch.zeros(sh) for sh in shapes))
    dim = torch.export.Dim("pixels", min=1, max=max(2, in_flight))
    with torch.no_grad():
        torch.onnx.export(wave, args, str(path), input_names=["rows", "cols", "force", "noise", "cache_0", "cache_1"],
                          output_names=["value", "logp", "new_0", "new_1"],
                          dynamic_shapes=({0: dim}, {0: dim}, {0: dim}, {0: dim}, None, None), dynamo=True,
                          opset_version=20, optimize=True, verbose=False, external_data=False)
    return wave, lag


def _image(cfg, height, width):
    from pixelrt.bundle import ImageSpec

    return ImageSpec(cfg.channels, height, width, cfg.levels)


def wavefront_sample(session, wave: WavefrontStep, lag: int, noise: np.ndarray):
    """Sample one image (noise (1, 1, H, W)) with the wavefront graph; returns (image (1, 1, H, W), logp, calls)."""
    _, _, H, W = noise.shape
    step = wave.step
    specs = (step.input_window.spec, step.block_windows.spec)
    caches = [np.zeros((1, st.shape[1], ring, st.shape[3], st.shape[4]), np.float32)
              for st, ring in zip(step.states, wave.rings)]
    image = np.zeros((H, W), np.int64)
    logp = np.zeros((H, W), np.float32)
    names = [o.name for o in session.get_outputs()]
    calls = 0
    for t in range(W + lag * (H - 1)):
        i = np.arange(max(0, -(-(t - W + 1) // lag)), min(H - 1, t // lag) + 1)
        j = t - lag * i
        feeds = {"rows": i, "cols": j, "force": np.full(len(i), -1, np.int64),
                 "noise": np.ascontiguousarray(noise[0, 0, i, j]), "cache_0": caches[0], "cache_1": caches[1]}
        value, lp, new_0, new_1 = session.run(names, feeds)
        calls += 1
        image[i, j], logp[i, j] = value, lp
        for cache, spec, ring, new in zip(caches, specs, wave.rings, (new_0, new_1)):
            cache[0, :, (i + spec.pad) % ring, j + spec.pad] = new  # (P, L, C) at each pixel's slot
    return image[None, None], logp[None, None], calls


def time_wavefront(model, image, threads: int | None, tmp: Path, seed: int = 0, repeats: int = 3) -> dict:
    """ms per image of wavefront sampling at batch 1 in ORT, and the image it samples for ``seed``."""
    import onnxruntime as ort

    from pixelrt.runtime.sampler import make_noise

    path = Path(tmp) / "wavefront.onnx"
    wave, lag = export_wavefront(model, image.width, image.height, path)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    noise = make_noise(1, image, seed)
    best, out = None, None
    for _ in range(repeats):
        t = time.perf_counter()
        out = wavefront_sample(session, wave, lag, noise)
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    return {"ms_per_image": best * 1e3, "calls": out[2], "lag": lag, "images": out[0], "logp": out[1],
            "noise": noise}
