"""A bundle checked against itself and against its export, on any runtime: what `pixelrt verify` runs.

Export runs the same checks on ONNX Runtime before a bundle is moved into place (export/kinds.py);
`pixelrt verify BUNDLE --runtime trt` runs them on the device itself, where the deployment engineer
needs the answer. Torch-free.

Autoregressive bundles:

* the full graph on the stored reference images against the log-likelihoods PyTorch measured at export;
* the teacher-forced step loop on the same images against the full graph (per sub-pixel, per image),
  and against the export-time log-likelihoods;
* freshly sampled images: their summed step log-probs against their full-graph log-likelihood;
* a causality probe: changing a later sub-pixel must not move any earlier log-prob.

Other kinds: their reference batch re-scored through their pipeline (ELBO / IWAE, the multi-scale bound).
"""
from __future__ import annotations

import contextlib

import numpy as np

from pixelrt.runtime.parity import ParityReport, Row, agreement_row, diff_row

BPD_BUDGET = 1e-5     # |delta bits/dim| per image
LOGP_BUDGET = 1e-4    # |delta log p| per sub-pixel, nats; other float outputs relative to max(1, |value|)
CAUSAL_BUDGET = 1e-6  # |delta log p| of an earlier sub-pixel when a later one changes (exactly 0 when causal)
WAVE_AGREEMENT_BUDGET = 0.9  # wavefront vs raster samples: one float tie at a CDF edge changes the rest (as parity)


def _keyed(row: Row, key: str) -> Row:
    row.key = key
    return row


def budgets(bundle) -> tuple[float, float, float]:
    """(against the export, step vs full, log p per sub-pixel) budgets of one bundle at its precision:
    bits/dim, bits/dim, nats. A reduced-precision step graph may sit one precision budget from FP32 on each
    side of its full graph (runtime/reference_check.py ``step_vs_full_budget``)."""
    if bundle.precision == "fp32":
        return BPD_BUDGET, BPD_BUDGET, LOGP_BUDGET
    from pixelrt.runtime.reference_check import drift_budget, step_vs_full_budget

    fp32 = float(np.mean(bundle.manifest.reference.bits_per_dim))
    svf = step_vs_full_budget(bundle.precision, fp32)
    return drift_budget(bundle), svf, svf * np.log(2.0) * bundle.image.channels * bundle.image.height * bundle.image.width


def step_checks(bundle, x: np.ndarray, context: dict, runtime: str = "ort", seed: int = 0,
                samples: int = 2, reference: np.ndarray | None = None) -> list[Row]:
    """Rows comparing a bundle's step loop with its full graph (and with ``reference`` log-likelihoods)."""
    from pixelrt.runtime.backends import open_backend
    from pixelrt.runtime.sampler import bundle_loop, make_noise

    img, sched = bundle.image, bundle.step_schedule
    bpd_budget, svf_budget, logp_budget = budgets(bundle)
    n = max(1, min(len(x), samples))
    row_name = sched.row_graph
    with open_backend(runtime, bundle.graph_path("full")) as full, \
            open_backend(runtime, bundle.graph_path("step")) as step, \
            (open_backend(runtime, bundle.graph_path(row_name)) if row_name else contextlib.nullcontext()) as row:
        full_out = full.infer({"x": x, **context})
        forced = bundle_loop(step, row, bundle, make_noise(len(x), img, seed, sched), force=x, context=context or None)
        ctx_n = {k: v[:n] for k, v in context.items()}
        drawn = bundle_loop(step, row, bundle, make_noise(n, img, seed + 1, sched), context=ctx_n or None)
        scored = full.infer({"x": drawn.images, **ctx_n})
        causal = causality_probe(full, img, x[:1], {k: v[:1] for k, v in context.items()}, runtime)
    full_ll = full_out["logp"].astype(np.float64).reshape(len(x), -1).sum(1)
    wave = wave_checks(bundle, runtime, x, context, seed, n, full_out["logp"], drawn, logp_budget, svf_budget)
    rows = []
    if reference is not None:
        # FP32: per image; FP16 / INT8: the batch mean, as their budget is defined (runtime/reference_check.py)
        per = (lambda a: a) if bundle.precision == "fp32" else (lambda a: np.atleast_1d(np.mean(a)))  # noqa: E731
        note = "" if bundle.precision == "fp32" else f"batch mean ({bundle.precision} vs the FP32 export)"
        ref_bpd = per(img.bits_per_dim(reference))
        rows += [
            _keyed(diff_row("full graph vs export-time log-likelihood of the reference images",
                            per(img.bits_per_dim(full_ll)), ref_bpd, bpd_budget, "bits/dim", note),
                   "full_vs_export_max_dbpd"),
            _keyed(diff_row("teacher-forced step loop vs export-time log-likelihood",
                            per(img.bits_per_dim(forced.loglik)), ref_bpd, bpd_budget, "bits/dim", note),
                   "step_vs_export_max_dbpd"),
        ]
    return rows + [
        _keyed(diff_row(f"teacher-forced {runtime.upper()} step loop vs {runtime.upper()} full graph: log p per sub-pixel",
                        forced.logp, full_out["logp"], logp_budget, "nats"), "step_vs_full_max_dlogp"),
        _keyed(diff_row(f"teacher-forced {runtime.upper()} step loop vs {runtime.upper()} full graph: bits/dim per image",
                        img.bits_per_dim(forced.loglik), img.bits_per_dim(full_ll), svf_budget, "bits/dim"),
               "step_vs_full_max_dbpd"),
        _keyed(diff_row("sampled images: summed step log p vs their full-graph log-likelihood",
                        img.bits_per_dim(drawn.loglik), img.bits_per_dim(scored["loglik"]), svf_budget, "bits/dim"),
               "sampled_vs_full_max_dbpd"),
        _keyed(causal, "causality_max_dlogp"),
    ] + wave


def wave_checks(bundle, runtime: str, x: np.ndarray, context: dict, seed: int, n: int, full_logp: np.ndarray,
                raster, logp_budget: float, svf_budget: float) -> list[Row]:
    """The wavefront loop (where the bundle has one and ``runtime`` runs it) against the full graph, teacher
    forced, and against the raster loop's samples for the same seed (``raster``: its first ``n`` images)."""
    from pixelrt.runtime.backends import open_backend, wave_loop_used
    from pixelrt.runtime.sampler import make_noise
    from pixelrt.runtime.wavefront import wave_loop

    if not wave_loop_used(runtime, bundle):
        return []
    img, sched = bundle.image, bundle.step_schedule
    ctx_n = {k: v[:n] for k, v in context.items()}
    with open_backend(runtime, bundle.graph_path(sched.wavefront.graph)) as wave, \
            open_backend(runtime, bundle.graph_path("full")) as full:
        forced = wave_loop(wave, img, bundle.state, sched, make_noise(len(x), img, seed, sched), force=x,
                           context=context or None)
        drawn = wave_loop(wave, img, bundle.state, sched, make_noise(n, img, seed + 1, sched), context=ctx_n or None)
        scored = full.infer({"x": drawn.images, **ctx_n})
    lag = f"lag {sched.wavefront.lag}, {sched.wavefront.calls(img.height, img.width)} calls per sub-step"
    return [
        _keyed(diff_row(f"teacher-forced wavefront loop vs {runtime.upper()} full graph: log p per sub-pixel",
                        forced.logp, full_logp, logp_budget, "nats", lag), "wave_vs_full_max_dlogp"),
        _keyed(diff_row("wavefront samples: summed log p vs their full-graph log-likelihood",
                        img.bits_per_dim(drawn.loglik), img.bits_per_dim(scored["loglik"]), svf_budget, "bits/dim"),
               "wave_sampled_vs_full_max_dbpd"),
        _keyed(agreement_row("wavefront vs raster samples, same seed: identical sub-pixels", drawn.images,
                             raster.images, WAVE_AGREEMENT_BUDGET, "a float tie at a CDF edge may flip a value"),
               "wave_vs_raster_agreement"),
    ]


def causality_probe(full, image, x: np.ndarray, context: dict, runtime: str = "ort") -> Row:
    """Change one sub-pixel at a time (every channel of a middle pixel and of the last row's first
    pixel); the log-probs of all earlier sub-pixels (raster order, channels in order) must not move."""
    C, H, W = image.shape
    base = full.infer({"x": x, **context})["logp"][0]
    order = np.arange(C * H * W).reshape(H, W, C).transpose(2, 0, 1)  # position of each sub-pixel in the order
    worst = 0.0
    probes = [(c, H // 2, W // 2) for c in range(C)] + [(c, H - 1, 0) for c in range(C)]
    for c, i, j in probes:
        moved = x.copy()
        moved[0, c, i, j] = (int(moved[0, c, i, j]) + 1 + image.levels // 2) % image.levels
        logp = full.infer({"x": moved, **context})["logp"][0]
        earlier = order < order[c, i, j]
        worst = max(worst, float(np.abs(logp - base)[earlier].max(initial=0.0)))
    return Row(f"causality probe ({runtime.upper()} full graph): earlier log p moved by a later sub-pixel",
               worst, worst, worst,
               CAUSAL_BUDGET, "nats", note=f"{len(probes)} probes")


def verify_bundle(bundle, runtime: str = "ort", samples: int = 2, seed: int = 0) -> ParityReport:
    """Every check a bundle supports on ``runtime``, as one table; its ``raise_on_miss`` is exit 1."""
    from pixelrt.errors import ParityError
    from pixelrt.runtime.pipelines import pipeline

    title = f"verify {bundle.root} ({bundle.kind}, {bundle.precision}) on {runtime}"
    if bundle.kind == "autoregressive":
        ref = bundle.reference()
        context = {k: ref[k] for k in bundle.context}
        rows = step_checks(bundle, ref["x"], context, runtime, seed, samples, reference=ref["loglik"])
        return ParityReport(title, rows)
    pipe = pipeline(bundle)
    try:
        check = pipe.check_reference(bundle, runtime)
        drift = check.drift
    except ParityError:
        drift = float("inf")  # the row below reports the miss in the table
    from pixelrt.runtime.reference_check import drift_budget

    row = Row(f"reference batch re-scored ({pipe.title}) vs export-time values", drift, drift, drift,
              drift_budget(bundle), "bits/dim")
    return ParityReport(title, [_keyed(row, "reference_max_dbpd")])
