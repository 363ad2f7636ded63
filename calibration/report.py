"""The precision table of `pixelrt parity` with several bundles: runtime x precision -> numbers.

One row per (runtime, precision) source, compared with FP32 PyTorch on the same held-out
images and the same noise. Torch-free: the rows are filled by whoever ran the sources.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from pixelrt.calibration.measure import bpd_budget, step_vs_full_budget
from pixelrt.errors import ParityError


@dataclass
class PrecisionRow:
    runtime: str                    # "torch", "ort", ...
    precision: str                  # fp32 / fp16 / int8
    bits_per_dim: float             # mean over the held-out images
    delta_bpd: float                # vs FP32 PyTorch, mean bits/dim difference
    max_image_dbpd: float           # max per-image |d bits/dim| vs FP32 PyTorch
    max_dlogp: float                # max |d log p| per sub-pixel vs FP32 PyTorch, nats
    step_vs_full: float | None      # max per-image |step - full| bits/dim (teacher-forced and samples)
    sample_agreement: float | None  # identical sub-pixels vs FP32 PyTorch step samples, shared noise
    budget: float                   # |delta_bpd| budget, bits/dim
    step_budget: float              # step_vs_full budget, bits/dim
    note: str = ""

    @property
    def ok(self) -> bool:
        step_ok = self.step_vs_full is None or self.step_vs_full <= self.step_budget
        return bool(abs(self.delta_bpd) <= self.budget and step_ok and np.isfinite(self.bits_per_dim))


@dataclass
class PrecisionReport:
    title: str
    fp32_bpd: float
    rows: list[PrecisionRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, runtime: str, precision: str, bpd: np.ndarray, logp: np.ndarray, ref_bpd: np.ndarray,
            ref_logp: np.ndarray, step_vs_full: float | None, agreement: float | None, note: str = "") -> PrecisionRow:
        row = PrecisionRow(runtime, precision, float(np.mean(bpd)), float(np.mean(bpd) - np.mean(ref_bpd)),
                           float(np.abs(np.asarray(bpd, np.float64) - ref_bpd).max()),
                           float(np.abs(np.asarray(logp, np.float64) - ref_logp).max()), step_vs_full, agreement,
                           bpd_budget(precision, self.fp32_bpd), step_vs_full_budget(precision, self.fp32_bpd), note)
        self.rows.append(row)
        return row

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def table(self) -> str:
        head = ("runtime", "precision", "bits/dim", "d vs fp32 torch", "max img |d|", "max |d log p|",
                "step vs full", "samples same", "budget d", "budget step", "")
        lines = [head]
        for r in self.rows:
            lines.append((r.runtime, r.precision, f"{r.bits_per_dim:.5f}", f"{r.delta_bpd:+.2e}",
                          f"{r.max_image_dbpd:.2e}", f"{r.max_dlogp:.2e}",
                          "-" if r.step_vs_full is None else f"{r.step_vs_full:.2e}",
                          "-" if r.sample_agreement is None else f"{r.sample_agreement:.1%}",
                          f"{r.budget:.1e}", f"{r.step_budget:.1e}", ("ok" if r.ok else "MISS") + (f"  ({r.note})" if r.note else "")))
        widths = [max(len(str(line[k])) for line in lines) for k in range(len(head))]
        out = [self.title]
        for n, line in enumerate(lines):
            out.append("  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip())
            if n == 0:
                out.append("  ".join("-" * w for w in widths))
        out += self.notes
        return "\n".join(out)

    def raise_on_miss(self) -> None:
        misses = [r for r in self.rows if not r.ok]
        if misses:
            raise ParityError("precision parity missed its budget: " + "; ".join(
                f"{r.runtime} {r.precision} (d bits/dim {r.delta_bpd:+.2e}, step vs full "
                f"{r.step_vs_full if r.step_vs_full is not None else 0:.2e}, budgets {r.budget:.1e} / {r.step_budget:.1e})"
                for r in misses))

    def as_dict(self) -> dict:
        return {"title": self.title, "ok": bool(self.ok), "fp32_bits_per_dim": self.fp32_bpd,
                "rows": [{**asdict(r), "ok": r.ok} for r in self.rows], "notes": self.notes}
