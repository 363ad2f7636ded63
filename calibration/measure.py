"""What a reduced-precision bundle is judged by: held-out bits/dim, and whether its step graph
still agrees with its own full graph (teacher-forced, and on its own samples).

Torch-free: runs any bundle through the runtime's backends, the evaluator and the step loop.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pixelrt.runtime.backends import open_backend
from pixelrt.bundle import Bundle
from pixelrt.runtime.evaluate import evaluate
from pixelrt.runtime.reference_check import (FP16_BPD_BUDGET, FP32_BPD_BUDGET, INT8_RELATIVE_BUDGET,  # noqa: F401
                                             bpd_budget, step_vs_full_budget)
from pixelrt.runtime.sampler import make_noise, step_loop


@dataclass
class BundleMeasure:
    bits_per_dim: np.ndarray      # (N,) held-out images, full graph
    logp: np.ndarray              # (N, C, H, W) full graph
    teacher_step_bpd: np.ndarray  # (T,) step graph, teacher-forced on the first T held-out images
    teacher_full_bpd: np.ndarray  # (T,) the same images through the full graph
    teacher_max_dlogp: float      # max |step - full| log p per sub-pixel, nats
    samples: np.ndarray           # (S, C, H, W) sampled with the step graph
    sample_step_bpd: np.ndarray   # (S,) summed step log p of the samples
    sample_full_bpd: np.ndarray   # (S,) full graph on the samples

    @property
    def mean_bpd(self) -> float:
        return float(self.bits_per_dim.mean())

    @property
    def step_vs_full_bpd(self) -> float:
        """Max per-image |step - full| bits/dim over teacher-forced images and samples."""
        d = np.concatenate([np.abs(self.teacher_step_bpd - self.teacher_full_bpd),
                            np.abs(self.sample_step_bpd - self.sample_full_bpd)])
        return float(d.max()) if d.size else 0.0


def measure_bundle(bundle: Bundle, x: np.ndarray, teacher: int = 8, samples: int = 8, seed: int = 0,
                   runtime: str = "ort", progress: bool = False) -> BundleMeasure:
    img = bundle.image
    with open_backend(runtime, bundle.graph_path("full")) as full, \
            open_backend(runtime, bundle.graph_path("step")) as step:
        ev = evaluate(full, bundle, x, source="held-out images")
        xt = x[:teacher]
        tf = step_loop(step, img, bundle.state, make_noise(len(xt), img, seed), force=xt, progress=progress,
                       desc=f"teacher-forced ({bundle.precision})")
        s = step_loop(step, img, bundle.state, make_noise(samples, img, seed), progress=progress,
                      desc=f"sampling ({bundle.precision})")
        sf = evaluate(full, bundle, s.images, source="samples")
    dlogp = float(np.abs(tf.logp - ev.logp[:teacher]).max()) if teacher else 0.0
    return BundleMeasure(ev.bits_per_dim, ev.logp, img.bits_per_dim(tf.loglik), ev.bits_per_dim[:teacher], dlogp,
                         s.images, img.bits_per_dim(s.loglik), sf.bits_per_dim)
