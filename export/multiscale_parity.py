"""Multi-scale parity and receptive field on the PyTorch side (torch lives here, not in pixelrt/).

`pixelrt parity` on a multi-scale checkpoint calls these through pixelrt/multiscale_commands.py.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from pixelrt.errors import PixelrtError
from pixelrt.export.multiscale_export import export_multiscale
from pixelrt.export.receptive_field import FieldReport, measure
from pixelrt.export.validate import BPD_BUDGET, LOGP_BUDGET
from pixelrt.models.multiscale import GivenCoarse
from pixelrt.bundle import ImageSpec, load_bundle
from pixelrt.runtime.multiscale import bias_field, evaluate_multiscale, open_multiscale, sample_multiscale
from pixelrt.runtime.ort_backend import OrtBackend


def run_multiscale_parity(model, meta: dict, test_x: np.ndarray, bundles: list, num: int, teacher: int,
                          samples: int, seed: int, progress: bool) -> tuple[dict, float, int, int]:
    """Rows {check: (max error, budget)}, held-out bits/dim (ORT), images compared, images forced."""
    with tempfile.TemporaryDirectory(prefix="pixelrt-parity-") as tmp:
        if len(bundles) > 1:
            raise PixelrtError("multi-scale parity compares one bundle with its checkpoint; pass --bundle once")
        if bundles:
            bundle = load_bundle(bundles[0])
        else:
            print("exporting a bundle to a temporary folder (pass --bundle to compare an existing one)")
            bundle, _ = export_multiscale(model, ImageSpec(**meta["image"]), test_x[:8], Path(tmp) / "bundle",
                                          log=lambda s: None)
        ms = open_multiscale(bundle)
        x = test_x[:num]
        with torch.inference_mode():
            ll_t = model(torch.from_numpy(x)).double().numpy()
            xt = torch.from_numpy(x[:teacher])
            p1, p2 = (p.numpy() for p in model.log_prob_parts(xt))
        ev = evaluate_multiscale(ms, x, source="held-out images")
        tf = sample_multiscale(ms, len(xt), seed, force=xt.numpy(), progress=progress)
        s = sample_multiscale(ms, samples, seed, progress=progress)
        with OrtBackend(ms.top.graph_path("cond")) as cond, OrtBackend(ms.stage1.graph_path("full")) as f1, \
                OrtBackend(ms.stage2.graph_path("full")) as f2:
            full = f1.infer({"x": s.coarse})["loglik"].astype(np.float64) + \
                f2.infer({"x": s.images, "bias": bias_field(cond, s.coarse)})["loglik"]
    rows = {
        "full: ORT vs PyTorch |d bits/dim|": (float(np.abs(ev.bits_per_dim - ms.image.bits_per_dim(ll_t)).max()), BPD_BUDGET),
        "stage 1 steps (forced) vs PyTorch |d log p|": (float(np.abs(tf.logp1 - p1).max()), LOGP_BUDGET),
        "stage 2 steps (forced) vs PyTorch |d log p|": (float(np.abs(tf.logp2 - p2).max()), LOGP_BUDGET),
        "samples: summed step log p vs full |d bits/dim|":
            (float(np.abs(ms.image.bits_per_dim(s.loglik) - ms.image.bits_per_dim(full)).max()), BPD_BUDGET),
    }
    return rows, ev.mean_bits_per_dim, len(x), len(xt)


def stage_fields(model, image: dict, seed: int) -> list[FieldReport]:
    """Receptive field per stage: stage 1 on the coarse image, stage 2 with a coarse image held fixed."""
    C, H, W = image["channels"], image["height"], image["width"]
    coarse = torch.randint(0, image["levels"], (1, C, H // 2, W // 2), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(seed))
    return [measure(model.stage1, "stage 1 (coarse image)", (C, H // 2, W // 2), seed=seed),
            measure(GivenCoarse(model, coarse), "stage 2 (coarse image fixed)", (C, H, W), seed=seed)]
