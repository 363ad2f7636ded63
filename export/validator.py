"""The one export validator: every graph of every spec, ONNX Runtime against PyTorch, at a batch the
graphs were not traced with; then the checks of the spec's kind (export/kinds.py).

Feeds come from each graph's I/O records, the way the runtime would fill them: real reference images
for ``x``, random integers below the levels for pixels and forced values, uniform noise, standard-normal
states and maps, valid labels, and the step protocol's scalars (``row``, ``col``, ``channel``) at corner,
edge and random positions. Every output is compared: sampled ``value`` must agree everywhere, log-probs
(unit nats) within the FP32 budget in nats, and any other float output within it relative to its size.
The result is one ParityReport (the runtime's comparison table); a miss is a ParityError and the
bundle is never moved into place (Optimum only warns).
"""
from __future__ import annotations

import numpy as np
import torch

from pixelrt.bundle import BATCH, GraphSpec, ImageSpec
from pixelrt.bundle.records import PIXELS
from pixelrt.errors import ParityError
from pixelrt.runtime.parity import ParityReport, Row, agreement_row, diff_row

from pixelrt.runtime.bundle_checks import BPD_BUDGET, LOGP_BUDGET  # the FP32 budgets, one definition


def keyed(row: Row, key: str) -> Row:
    row.key = key
    return row


def positions(height: int, width: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    pts = {(0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1), (height // 2, width // 2)}
    pts |= {(int(rng.integers(height)), int(rng.integers(width))) for _ in range(3)}
    return sorted(pts)


VALIDATE_PIXELS = 4  # a wavefront graph's pixels in flight at validation (traced with 3)


def _feed(t, batch: int, image: ImageSpec, rng, given: dict, scalars: dict, classes: dict) -> np.ndarray:
    shape = tuple(batch if d == BATCH else VALIDATE_PIXELS if d == PIXELS else d for d in t.shape)
    if t.name in ("rows", "cols") and PIXELS in t.shape:  # a wavefront's pixels in flight: any valid positions
        return rng.integers(0, image.height if t.name == "rows" else image.width, shape).astype(np.int64)
    if t.name in given and given[t.name].shape[1:] == shape[1:]:
        return np.ascontiguousarray(given[t.name][:batch])
    if t.name in scalars:
        return np.array(scalars[t.name], np.int64)
    if t.name in classes:
        return rng.integers(0, classes[t.name], shape).astype(np.int64)
    if t.name == "force":
        v = rng.integers(0, image.levels, shape)
        return np.where(rng.random(shape) < 0.5, v, -1).astype(np.int64)
    if t.name == "noise":
        return rng.random(shape, dtype=np.float32)
    if t.dtype in ("uint8", "int64"):
        return rng.integers(0, image.levels, shape).astype(t.dtype)
    return rng.standard_normal(shape).astype(t.dtype)


def scalar_runs(spec: GraphSpec, image: ImageSpec, rng) -> list[dict]:
    """The values of the graph's scalar inputs to run with: positions x channels, or one run."""
    names = {t.name for t in spec.inputs if t.shape == ()}
    C, H, W = image.shape
    runs = []
    for i, j in positions(H, W, rng) if names & {"row", "col"} else [(None, None)]:
        for c in range(C) if "channel" in names else [None]:
            runs.append({k: v for k, v in (("row", i), ("col", j), ("channel", c)) if k in names and v is not None})
    return runs


class TorchGraph:
    """A graph's PyTorch module run on numpy feeds by the record's names."""

    def __init__(self, module, spec: GraphSpec):
        self.module, self.spec = module.eval(), spec

    @torch.inference_mode()
    def infer(self, feeds: dict) -> dict:
        out = self.module(*(torch.from_numpy(np.asarray(feeds[n])) for n in self.spec.input_names()))
        out = out if isinstance(out, tuple) else (out,)
        return {n: v.numpy() for n, v in zip(self.spec.output_names(), out)}


def check_graph(name: str, graph, path, image: ImageSpec, batch: int, given: dict, classes: dict,
                seed: int = 0) -> list[Row]:
    """One graph, ORT vs PyTorch over every scalar run; rows for every output."""
    from pixelrt.runtime.ort_backend import OrtBackend

    rng = np.random.default_rng(seed)
    spec, ref = graph.spec, TorchGraph(graph.module, graph.spec)
    got_all, want_all = {}, {}
    with OrtBackend(path) as ort:
        for scalars in scalar_runs(spec, image, rng):
            feeds = {t.name: _feed(t, batch, image, rng, given, scalars, classes) for t in spec.inputs}
            a, b = ort.infer(feeds), ref.infer(feeds)
            for t in spec.outputs:  # the batch axis first (a batch-last wavefront's new columns have it last)
                axis = t.shape.index(BATCH) if BATCH in t.shape else 0
                got_all.setdefault(t.name, []).append(np.moveaxis(a[t.name], axis, 0))
                want_all.setdefault(t.name, []).append(np.moveaxis(b[t.name], axis, 0))
    got = {k: np.stack(v) for k, v in got_all.items()}
    want = {k: np.stack(v) for k, v in want_all.items()}
    same = np.ones(got[spec.output_names()[0]].shape[:2], bool)  # (runs, batch): rows whose samples agree
    rows = []
    for t in spec.outputs:
        if t.dtype in ("int64", "uint8"):
            rows.append(keyed(agreement_row(f"{name}: {t.name} identical, ORT vs PyTorch", got[t.name].reshape(-1, 1),
                                            want[t.name].reshape(-1, 1), 1.0 if t.name == "value" else None,
                                            note="shared noise"), f"{name}_{t.name}_agreement"))
            if t.name == "value":
                same &= (got[t.name] == want[t.name]).reshape(*same.shape, -1).all(-1)
    for t in spec.outputs:
        if t.dtype in ("int64", "uint8"):
            continue
        a, b = got[t.name][same], want[t.name][same]
        if t.name == "loglik":
            rows.append(keyed(diff_row(f"{name}: bits/dim per image, ORT vs PyTorch", image.bits_per_dim(a),
                                       image.bits_per_dim(b), BPD_BUDGET, "bits/dim"), f"{name}_max_dbpd"))
        elif t.unit == "nats":
            rows.append(keyed(diff_row(f"{name}: {t.name} per sub-pixel, ORT vs PyTorch", a, b, LOGP_BUDGET, "nats"),
                              f"{name}_max_d{t.name}"))
        else:
            scale = np.maximum(1.0, np.abs(b.astype(np.float64)))
            rows.append(keyed(diff_row(f"{name}: {t.name}, ORT vs PyTorch", a / scale, b / scale, LOGP_BUDGET,
                                       "relative"), f"{name}_max_d{t.name}"))
    return rows


def check_graphs(spec, bundle, x: np.ndarray, context: dict) -> list[Row]:
    """Every graph of one (sub-)bundle, at the untraced batch len(x)."""
    classes = {c.name: c.classes for c in spec.conditioning if c.kind == "class"}
    given = {"x": x, **context}
    rows = []
    for name, graph in spec.graphs.items():
        rows += check_graph(name, graph, bundle.graph_path(name), spec.image, len(x), given, classes)
    return rows


def raise_on_miss(rep: ParityReport, where: str) -> None:
    if not rep.ok:
        misses = "; ".join(f"{r.check} {r.min_value:.2e} vs budget {r.budget:g}" for r in rep.misses)
        raise ParityError(f"export validation failed{where}: {misses}. The graphs are not faithful to the PyTorch "
                          "model and nothing was written; report this with the checkpoint.")


def validation_record(rep: ParityReport) -> dict:
    """The manifest's record of what export measured: each row's key and worst value (NaN fails closed)."""
    record = {r.key: (r.min_value if r.higher_is_better else r.max) for r in rep.rows}
    bad = [k for k, v in record.items() if not np.isfinite(v)]
    if bad:
        raise ParityError(f"export validation measured non-finite values ({', '.join(bad)}); the graphs are not "
                          "faithful and nothing was written")
    return record
