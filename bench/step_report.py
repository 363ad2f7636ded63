"""The step-loop bench's tables: naive vs cached per batch with the issue's targets, and the scaling table.

Targets (issue 17; ratios within one run, never asserted in a test):
* batch 1: ORT cached >= 150x naive, and <= 3x ORT's per-call floor for a graph of the step graph's
  optimised node count (``bench/step_speed.py``);
* batch 64: ORT cached >= 50% of the matmul peak measured at the thread count ORT ran with.

Each is reported for the raster step loop and for the wavefront loop (several pixels per call, what
`pixelrt sample` runs on ORT where the bundle has a wavefront graph; its floor is at its own node count).
"""
from __future__ import annotations

TARGET_SPEEDUP = 150.0       # ORT cached vs naive, batch 1
TARGET_FLOOR_RATIO = 3.0     # ORT cached per step at batch 1 vs the per-call floor at the step's node count
TARGET_PEAK_FRACTION = 0.50  # ORT cached at batch 64, share of the matmul peak at the same thread count


def _num(v, fmt: str, width: int) -> str:
    return f"{'-':>{width}s}" if v is None else format(v, fmt)


def format_report(records: list[dict], peak: float | None) -> str:
    """The table, and where FLOPs are counted: the measured peaks, node counts, the floor and the targets."""
    scaling = [r for r in records if r["method"] == "scaling"]
    records = [r for r in records if r["method"] != "scaling"]
    naive = {r["batch"]: r["ms_per_image"] for r in records if r["method"] == "naive"}
    mw = max(8, *(len(r["model"]) for r in records))
    head = f"{'model':{mw}s} {'runtime':8s} {'method':9s} {'batch':>5s} {'ms/image':>11s} {'us/step':>9s} " \
           f"{'vs naive':>9s} {'GFLOP/s':>8s} {'of peak':>8s}"
    lines, notes = [head, "-" * len(head)], set()
    for r in records:
        mark = "*" if r["extrapolated_from_rows"] else " "
        if r["extrapolated_from_rows"]:
            notes.add(f"* {r['method']}: timed {r['extrapolated_from_rows']} of {r['height']} rows, "
                      f"extrapolated linearly to the full image")
        speed = naive[r["batch"]] / r["ms_per_image"] if r["batch"] in naive else float("nan")
        share = None if r["peak_fraction"] is None else 100 * r["peak_fraction"]
        lines.append(f"{r['model']:{mw}s} {r['runtime']:8s} {r['method']:9s} {r['batch']:5d} "
                     f"{r['ms_per_image']:10.2f}{mark} {_num(r.get('us_per_step'), '9.1f', 9)} {speed:8.1f}x "
                     f"{_num(r['gflops'], '8.2f', 8)} {_num(share, '7.2f', 7)}{'%' if share is not None else ' '}")
    lines += sorted(notes)
    r0 = records[0]
    if r0["step_flops_per_pixel"] is not None:
        lines.append(f"FLOPs/pixel: cached step {r0['step_flops_per_pixel']:,}; dense full forward "
                     f"{r0['dense_flops_per_pixel']:,} (naive pays it over the whole image per sub-pixel)")
    if peak is not None:
        by_threads = ", ".join(f"{t} thread{'s' if int(t) > 1 else ''} {g:.1f}"
                               for t, g in (r0.get("peak_gflops_by_threads") or {}).items())
        lines.append(f"measured peak: {peak:.1f} GFLOP/s at ORT's thread count ({r0['ort_threads'] or 'default'}; "
                     f"float32 1024^3 numpy matmul, best of 10){f'; by threads: {by_threads}' if by_threads else ''}")
        if r0.get("ort_peak_gflops"):
            lines.append(f"ONNX Runtime's own MatMul (MLAS), the same product at the same threads: "
                         f"{r0['ort_peak_gflops']:.1f} GFLOP/s, {r0['ort_peak_gflops'] / peak:.2f}x numpy's "
                         f"(the CPU's real peak where numpy's BLAS runs an older kernel)")
    if r0.get("step_nodes") is not None:
        lines.append(f"step graph: {r0['step_nodes']} nodes exported, {r0['step_nodes_optimized']} after ORT's "
                     f"optimiser; ORT per-call floor (bound): 1 node {r0['floor_1_node_us']:.1f} us, "
                     f"{r0['step_nodes_optimized']} nodes {r0['floor_us']:.1f} us")
    for r in records:
        if r["method"] == "wavefront":
            eff = r.get("effective_peak_fraction")
            lines.append(f"wavefront, batch {r['batch']}: {r['calls_per_image']} calls per image (lag {r['lag']}), "
                         f"{r['us_per_call']:.1f} us per call; {r['same_images_as_cached']:.1%} of sub-pixels as the "
                         f"raster loop samples, max |delta log p| {r['max_abs_logp_vs_cached']:.1e} nats; "
                         f"{r['flops_per_pixel']:,} FLOPs/pixel run (the masked taps skipped)"
                         + (f", {eff:.1%} of peak at the step graph's {r['step_flops_per_pixel']:,}" if eff else ""))
    if r0.get("wave_floor_us") is not None:
        wave = r0["graph_nodes"].get("wave", {})
        lines.append(f"wave graph: {wave.get('exported')} nodes exported, {wave.get('optimized')} after ORT's "
                     f"optimiser; ORT per-call floor at that count {r0['wave_floor_us']:.1f} us")
    if r0.get("state_bytes_per_image") is not None:
        lines.append(f"loop state: {r0['state_bytes_per_image'] / 1024:.1f} KiB per image")
    fp32 = {r["batch"]: r["ms_per_image"] for r in records if r["runtime"] == "ort" and r["method"] == "cached"}
    for r in records:
        if r.get("precision", "fp32") != "fp32" and r["batch"] in fp32:
            lines.append(f"ORT step sampling, batch {r['batch']}: {r['precision']} takes "
                         f"{r['ms_per_image'] / fp32[r['batch']]:.2f}x the fp32 time (same run)")
    load, cpus = max(r["load_avg_1m"] for r in records), r0["cpu_count"] or 1
    if load > cpus:
        lines.append(f"warning: 1-min load average reached {load:.1f} on {cpus} CPUs; other processes compete "
                     f"for the cores, which slows small multi-threaded ops (naive at batch 1) most: re-run idle")
    if peak is not None:
        lines += _targets(records, naive)
    if scaling:
        lines += ["", format_scaling(scaling)]
    return "\n".join(lines)


def _targets(records: list[dict], naive: dict) -> list[str]:
    """Each target for the raster step loop and, where the bundle has one, the wavefront loop (what
    `pixelrt sample` runs on ORT): per call against ORT's floor at that graph's own node count."""
    lines = []
    for method, title in (("cached", "ORT cached (raster)"), ("wavefront", "ORT wavefront")):
        ort = {r["batch"]: r for r in records if r["runtime"] == "ort" and r["method"] == method}
        if method == "wavefront" and not ort:
            continue
        per_call = "us_per_call" if method == "wavefront" else "us_per_step"
        floor = "wave_floor_us" if method == "wavefront" else "floor_us"
        targets = [(f"{title} >= {TARGET_SPEEDUP:.0f}x faster than naive at batch 1", 1, TARGET_SPEEDUP,
                    lambda r: naive[1] / r["ms_per_image"], "{:.1f}x", True),
                   (f"{title} <= {TARGET_FLOOR_RATIO:.0f}x ORT's per-call floor at its graph's node count, batch 1",
                    1, TARGET_FLOOR_RATIO,
                    lambda r: r[per_call] / r[floor] if r.get(floor) and r.get(per_call) else None, "{:.2f}x", False),
                   (f"{title} >= {TARGET_PEAK_FRACTION:.0%} of the matmul peak at the same threads, batch 64", 64,
                    TARGET_PEAK_FRACTION, lambda r: r["peak_fraction"], "{:.1%}", True)]
        for k, (text, b, goal, value, fmt, at_least) in enumerate(targets):
            v = value(ort[b]) if b in ort and b in naive else None
            if v is None:
                lines.append(f"target: {text}: not measured (batch {b} not run)")
                continue
            met = v >= goal if at_least else v <= goal
            after = ort[b].get("peak_fraction_after") if k == len(targets) - 1 else None  # the peak target
            also = "" if after is None else \
                f" (of the run's first peak; {after:.1%} of the peak re-measured right after this row, " \
                f"{ort[b]['peak_after_gflops']:.1f} GFLOP/s)"
            if after is not None and ort[b].get("ort_peak_fraction") is not None:
                also += f"; against ONNX Runtime's own MatMul peak: {ort[b]['ort_peak_fraction']:.1%} " \
                        f"({ort[b]['ort_peak_fraction_after']:.1%} re-measured after the row) -> " \
                        f"{'met' if ort[b]['ort_peak_fraction'] >= goal else 'not met'}"
            lines.append(f"target: {text}: {fmt.format(v)} -> {'met' if met else 'not met'}{also}")
    return lines


def format_scaling(records: list[dict]) -> str:
    """Cost vs image size: the same layer stack at growing widths; per step it should stay flat. The
    wavefront rows time whole images (us per step = per sub-pixel position for the whole batch, as the raster
    rows; and per call: a call carries more pixels as W grows)."""
    head = f"{'image':>9s} {'loop':9s} {'batch':>5s} {'ms/image':>10s} {'us/step':>9s} {'per step vs first':>18s} " \
           f"{'us/call':>9s} {'state/image':>12s} {'rows timed':>10s}"
    lines = [f"scaling: {records[0]['model']}'s layer stack at growing image sizes (ORT, same weights)",
             head, "-" * len(head)]
    first = {}
    for r in records:
        loop = r.get("loop", "raster")
        base = first.setdefault((loop, r["batch"]), r["us_per_step"])
        call = r.get("us_per_call", r["us_per_step"])
        lines.append(f"{r['height']:>4d}x{r['width']:<4d} {loop:9s} {r['batch']:5d} {r['ms_per_image']:10.2f} "
                     f"{r['us_per_step']:9.1f} {r['us_per_step'] / base:17.2f}x {call:9.1f} "
                     f"{r['state_bytes_per_image'] / 1024:9.1f} KiB {r['rows_timed']:10d}")
    return "\n".join(lines)
