"""Parity reports in the units users care about, written without torch.

A report is a table: each row compares two sources of the same quantity,
gives max / mean / median of the error (the max is the smallest tolerance that
would have passed) and the budget. A miss is an error, not a warning.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pixelrt.errors import ParityError


@dataclass
class Row:
    check: str             # what is compared, e.g. "bits/dim: PyTorch vs ORT full"
    max: float
    mean: float
    median: float
    budget: float | None   # None: reported only
    unit: str
    higher_is_better: bool = False  # agreement fractions: measured must be >= budget
    note: str = ""
    key: str = ""  # a short stable name (export's validation record in the manifest)

    @property
    def ok(self) -> bool:
        if self.budget is None:
            return True
        return self.min_value >= self.budget if self.higher_is_better else self.max <= self.budget

    @property
    def min_value(self) -> float:
        return self.mean if self.higher_is_better else self.max

    def as_dict(self) -> dict:
        return {**self.__dict__, "ok": self.ok}


def diff_row(check: str, a: np.ndarray, b: np.ndarray, budget: float | None, unit: str, note: str = "") -> Row:
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).ravel()
    return Row(check, float(d.max()), float(d.mean()), float(np.median(d)), budget, unit, note=note)


def agreement_row(check: str, a: np.ndarray, b: np.ndarray, budget: float | None, note: str = "") -> Row:
    """Fraction of identical elements (e.g. sampled sub-pixels under shared noise)."""
    same = (np.asarray(a) == np.asarray(b)).reshape(len(a), -1).mean(1)
    return Row(check, float(same.max()), float(same.mean()), float(np.median(same)), budget, "fraction",
               higher_is_better=True, note=note)


def count_row(check: str, count: int, budget: int, unit: str, note: str = "") -> Row:
    return Row(check, float(count), float(count), float(count), float(budget), unit, note=note)


@dataclass
class ParityReport:
    title: str
    rows: list[Row] = field(default_factory=list)
    summary: dict = field(default_factory=dict)  # headline numbers, e.g. bits/dim per source
    artifacts: dict = field(default_factory=dict)  # arrays worth showing (sampled images), not compared

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def misses(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]

    def table(self) -> str:
        head = ("check", "max", "mean", "median", "budget", "unit", "")
        lines = [head]
        for r in self.rows:
            budget = "-" if r.budget is None else (f">= {r.budget:g}" if r.higher_is_better else f"<= {r.budget:.0e}")
            lines.append((r.check, _num(r.max), _num(r.mean), _num(r.median), budget, r.unit,
                          ("ok" if r.ok else "MISS") + (f"  ({r.note})" if r.note else "")))
        widths = [max(len(str(line[k])) for line in lines) for k in range(len(head))]
        out = [self.title]
        for n, line in enumerate(lines):
            out.append("  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip())
            if n == 0:
                out.append("  ".join("-" * w for w in widths))
        for key, value in self.summary.items():
            out.append(f"{key}: {value}")
        return "\n".join(out)

    def row(self, key: str) -> Row:
        """The row with this ``key`` (KeyError naming the known keys)."""
        for r in self.rows:
            if r.key == key:
                return r
        raise KeyError(f"no row {key!r}; rows: {', '.join(r.key for r in self.rows)}")

    def raise_on_miss(self) -> None:
        if not self.ok:
            names = "; ".join(f"{r.check} ({_num(r.min_value)} vs budget {r.budget:g})" for r in self.misses)
            raise ParityError(f"parity missed its budget: {names}")

    def as_dict(self) -> dict:
        return {"title": self.title, "ok": self.ok, "rows": [r.as_dict() for r in self.rows], "summary": self.summary}


def _num(v: float) -> str:
    return f"{v:.3g}" if v == 0 or 1e-3 <= abs(v) < 1e4 else f"{v:.2e}"
