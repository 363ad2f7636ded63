"""Reduced precision judged against the PyTorch model: the `pixelrt parity` table for several
bundles, and FP16 error measured with real half-precision arithmetic.

ONNX Runtime's CPU provider has no FP16 kernels for Conv/MatMul on x86: it wraps
FP16 nodes in inserted casts and computes in FP32 (docs/precision.md shows the
optimized graph). So the FP16 bundle's error measured in ORT on this CPU is the
error of FP16 *storage* (weights and activations rounded at region borders), not
of FP16 arithmetic. :func:`half_precision_logp` therefore also runs the PyTorch
model in torch.float16 on the CPU (half-precision conv and matmul kernels), with
the likelihood tail in FP32 as in the FP16 bundle, and the FP16 budget is judged
on that too.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from pixelrt.calibration.measure import measure_bundle
from pixelrt.calibration.report import PrecisionReport
from pixelrt.models.heads import gather_logp, log_softmax
from pixelrt.models.reference import TorchStepRunner
from pixelrt.bundle import Bundle
from pixelrt.data import Dataset
from pixelrt.runtime.evaluate import check_bundle_images
from pixelrt.runtime.sampler import make_noise, step_loop


@torch.inference_mode()
def half_precision_logp(model: torch.nn.Module, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, C, H, W) log p per sub-pixel with the network computed in float16 on this device.

    As in the FP16 bundle, the last weight layer (the logits) and the log-softmax stay float32
    for families exposing ``normalize`` + ``logits_from_float`` (PixelCNN); others run
    ``log_prob`` in float16 except that last layer (stricter)."""
    m16 = copy.deepcopy(model).eval().half()
    _head_in_float32(m16)
    out = []
    for lo in range(0, len(x), batch_size):
        xb = torch.from_numpy(x[lo:lo + batch_size])
        if hasattr(m16, "logits_from_float") and hasattr(m16, "normalize"):
            logits = m16.logits_from_float(m16.normalize(xb).half()).float()  # (B, C, levels, H, W)
            logp = gather_logp(log_softmax(logits, dim=2), xb.long(), dim=2)
        else:
            logp = m16.log_prob(xb).float()
        out.append(logp.numpy())
    return np.concatenate(out)


def _head_in_float32(model: torch.nn.Module) -> None:
    """Keep the last weight layer (the logits) in float32, as the FP16 bundle does (calibration.graphs.head_gemms)."""
    layers = [m for m in model.modules() if isinstance(getattr(m, "weight", None), torch.Tensor)
              and m.weight.dim() >= 2 and not list(m.children())]
    if layers:
        head = layers[-1].float()
        head.register_forward_pre_hook(lambda m, args: tuple(a.float() if torch.is_tensor(a) else a for a in args))


def run_precision_parity(model: torch.nn.Module, bundles: list[Bundle], x: np.ndarray, samples: int = 8,
                         teacher: int = 8, seed: int = 0, runtimes: tuple[str, ...] = ("ort",),
                         progress: bool = False, log=print) -> PrecisionReport:
    """One row per runtime x bundle precision, plus FP32 PyTorch (the reference) and real-half PyTorch."""
    model = model.eval()
    img = bundles[0].image
    for b in bundles[1:]:
        if b.image != img:
            raise ValueError(f"bundles disagree on the image spec ({b.root}: {b.image}, {bundles[0].root}: {img})")
    x = check_bundle_images(bundles[0], x, "parity data")
    log("FP32 PyTorch: full path, step path teacher-forced and sampled")
    with torch.inference_mode():
        ref_logp = model.log_prob(torch.from_numpy(x)).numpy()
    ref_bpd = img.bits_per_dim(ref_logp.astype(np.float64).reshape(len(x), -1).sum(1))
    runner = TorchStepRunner(model, image=img)
    xt = x[:teacher]
    tf = step_loop(runner, img, bundles[0].state, make_noise(len(xt), img, seed), force=xt, progress=progress,
                   desc="teacher-forced (PyTorch)")
    ref_samples = step_loop(runner, img, bundles[0].state, make_noise(samples, img, seed), progress=progress,
                            desc="sampling (PyTorch)")
    with torch.inference_mode():
        s_logp = model.log_prob(torch.from_numpy(ref_samples.images)).numpy()
    s_bpd = img.bits_per_dim(s_logp.astype(np.float64).reshape(samples, -1).sum(1))
    torch_svf = float(max(np.abs(img.bits_per_dim(tf.loglik) - ref_bpd[:teacher]).max(initial=0.0),
                          np.abs(img.bits_per_dim(ref_samples.loglik) - s_bpd).max(initial=0.0)))
    report = PrecisionReport(f"precision parity: {bundles[0].family} {'x'.join(map(str, img.shape))}, "
                             f"{img.levels} levels, {len(x)} held-out images, {teacher} teacher-forced, "
                             f"{samples} samples (seed {seed})", float(ref_bpd.mean()))
    report.add("torch", "fp32", ref_bpd, ref_logp, ref_bpd, ref_logp, torch_svf, 1.0, note="reference")
    log("PyTorch in float16 (real half-precision arithmetic on this CPU)")
    h_logp = half_precision_logp(model, x)
    h_bpd = img.bits_per_dim(h_logp.astype(np.float64).reshape(len(x), -1).sum(1))
    report.add("torch", "fp16", h_bpd, h_logp, ref_bpd, ref_logp, None, None, note="real fp16 arithmetic, full path")
    for runtime in runtimes:
        for b in bundles:
            log(f"{runtime} {b.precision} bundle {b.root}")
            m = measure_bundle(b, x, teacher=teacher, samples=samples, seed=seed, runtime=runtime, progress=progress)
            note = (b.manifest.calibration or {}).get("method") or ""
            report.add(runtime, b.precision, m.bits_per_dim, m.logp, ref_bpd, ref_logp, m.step_vs_full_bpd,
                       float((m.samples == ref_samples.images).mean()), note=f"method {note}" if note else "")
    report.notes.append("budget d: |mean bits/dim - FP32 PyTorch| (fp32 1e-5, fp16 1e-3, int8 2% of the FP32 bits/dim); "
                        "budget step: per-image |step - full| of the same precision (fp32 1e-5, else twice budget d: "
                        "docs/precision.md); samples same: reported only (one flip changes the rest of an image)")
    return report


def precision_parity(model: torch.nn.Module, bundles: list[Bundle], held: Dataset, opts) -> PrecisionReport:
    """The ``PRECISION["autoregressive"]`` table on the held-out sample ``held``, in each of ``opts.runtimes``."""
    return run_precision_parity(model, bundles, held.x, samples=opts.samples, teacher=opts.teacher, seed=opts.seed,
                                runtimes=tuple(opts.runtimes), progress=opts.progress, log=opts.log)
