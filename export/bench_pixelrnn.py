"""`pixelrt bench --model rowlstm|diagbilstm`: naive vs cached step sampling of the PixelRNN family.

Same method as the PixelCNN bench (export/bench.py): the naive sampler re-runs the full
path per sub-pixel and is timed on ``naive_rows`` rows, then scaled to the image; cached
sampling is the step graph (plus the Diagonal BiLSTM's per-row graph) driven by the one
step loop, in PyTorch and in ONNX Runtime. Only the step and row graphs are exported
(the full graph unrolls the recurrence and is not needed to time sampling). Ratios are
what to compare; on a loaded machine absolute times move a lot.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pixelrt.errors import PixelrtError
from pixelrt.bundle import ImageSpec, StepSchedule


@dataclass(frozen=True)
class RNNBenchSpec:
    name: str
    family: str
    config: dict = field(hash=False)
    image: ImageSpec = ImageSpec(1, 16, 16, 256)
    seed: int = 0

    def build(self) -> torch.nn.Module:
        from pixelrt.models import get_model

        torch.manual_seed(self.seed)
        entry = get_model(self.family)
        return entry.build(entry.make_config(**self.config)).eval()


# Default widths of each model (2h = 64, state 32, 2 layers), 256 levels, a small 16x16 image for this CPU.
RNN_MODELS = {
    "rowlstm": RNNBenchSpec("rowlstm16", "rowlstm", dict(channels=1, levels=256)),
    "diagbilstm": RNNBenchSpec("diagbilstm16", "diagbilstm", dict(channels=1, levels=256)),
}


def _best(fn, repeats: int, budget_s: float) -> float:
    best, spent = float("inf"), 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        best, spent = min(best, dt), spent + dt
        if spent > budget_s:
            break
    return best


def run_rnn_bench(model: str, batches: list[int], naive_rows: int = 1, rows: int | None = None,
                  spec: RNNBenchSpec | None = None, threads: int | None = None, log=None) -> list[dict]:
    """ms per image: naive (torch) vs cached step (torch, ORT) at each batch size; prints a table."""
    from pixelrt.export.bench import time_naive
    from pixelrt.export.onnx_export import export_step
    from pixelrt.export.row_graph import ROW_FILE, all_state_specs, export_row, has_row_graph
    from pixelrt.models.reference import TorchRowRunner, TorchStepRunner
    from pixelrt.runtime.ort_backend import OrtBackend
    from pixelrt.runtime.sampler import make_noise, step_loop

    log = log or (lambda s: print(s, flush=True))
    spec = spec or RNN_MODELS.get(model)
    if spec is None:
        raise PixelrtError(f"unknown PixelRNN bench model {model!r}; choose one of {', '.join(RNN_MODELS)}")
    if not batches or min(batches) < 1 or naive_rows < 1 or (rows is not None and rows < 1):
        raise PixelrtError("batch sizes, --naive-rows and --rows must be positive integers")
    if threads is not None:
        torch.set_num_threads(threads)
    net, image = spec.build(), spec.image
    C, H, W = image.shape
    rows = min(rows or H, H)
    sub = ImageSpec(C, rows, W, image.levels)
    records = []
    with tempfile.TemporaryDirectory(prefix="pixelrt-bench-rnn-") as tmp:
        log(f"exporting {spec.name}'s step graph{' and row graph' if hasattr(net, 'row_stepper') else ''}")
        stepper = export_step(net, C, W, Path(tmp) / "step.onnx")
        states = all_state_specs(stepper, W)
        with_row = has_row_graph(stepper)
        if with_row:
            export_row(net, stepper, C, W, Path(tmp) / ROW_FILE)
        sched = StepSchedule(C, row_graph="row" if with_row else None)
        t_step, t_row = TorchStepRunner(net), (TorchRowRunner(net) if with_row else None)
        with OrtBackend(Path(tmp) / "step.onnx", threads=threads or 0) as o_step:
            o_row = OrtBackend(Path(tmp) / ROW_FILE, threads=threads or 0).__enter__() if with_row else None
            try:
                for b in batches:
                    log(f"[batch {b}] naive torch, {min(naive_rows, H)} of {H} rows ...")
                    naive = time_naive(net, image, b, min(naive_rows, H), seed=spec.seed)
                    records.append(_rec(spec, "torch", "naive", b, naive, min(naive_rows, H), H))
                    for name, step, row in (("torch", t_step, t_row), ("ort", o_step, o_row)):
                        log(f"[batch {b}] cached {name}, {rows} of {H} rows ...")
                        noise = make_noise(b, sub, spec.seed, sched)
                        step_loop(step, ImageSpec(C, 1, W, image.levels), states, noise[:, :, :1], batch_size=b,
                                  schedule=sched, row_runner=row)  # warm-up row
                        sec = _best(lambda: step_loop(step, sub, states, noise, batch_size=b, schedule=sched,
                                                      row_runner=row), 3, 4.0) * H / rows / b
                        records.append(_rec(spec, name, "cached", b, sec, rows, H))
            finally:
                if o_row is not None:
                    o_row.__exit__(None, None, None)
    log(format_rnn_report(records))
    return records


def _rec(spec, runtime, method, batch, seconds, timed_rows, height) -> dict:
    return {"model": spec.name, "runtime": runtime, "method": method, "batch": batch,
            "ms_per_image": seconds * 1e3, "rows_timed": timed_rows, "height": height,
            "image": list(spec.image.shape), "levels": spec.image.levels}


def format_rnn_report(records: list[dict]) -> str:
    naive = {r["batch"]: r["ms_per_image"] for r in records if r["method"] == "naive"}
    head = f"{'model':13s} {'runtime':7s} {'method':7s} {'batch':>5s} {'ms/image':>11s} {'vs naive':>9s}"
    lines = [head, "-" * len(head)]
    for r in records:
        mark = "*" if r["rows_timed"] < r["height"] else " "
        lines.append(f"{r['model']:13s} {r['runtime']:7s} {r['method']:7s} {r['batch']:5d} "
                     f"{r['ms_per_image']:10.2f}{mark} {naive[r['batch']] / r['ms_per_image']:8.1f}x")
    lines.append("* timed on the first rows only, extrapolated linearly to the full image")
    return "\n".join(lines)
