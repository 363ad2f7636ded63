"""Derivation, part 2: which values are cached, in which state, with which window.

A value read by a later step at an earlier position (a conv's taps above or left of the centre) is cached
in a ring of its last rows (``ring-row`` state, channels last; values of one geometry share one stacked
state, as ``CausalSequential``'s do). A row value (reach 1, computed by the row graph) read by later rows is
kept as its last ``a`` rows (a ``row`` state the row graph replaces). Each conv's probed kernel is cut into
the matrices its step form multiplies: the centre tap (this step's input), the window over a ring, the
window over a row state, and for the row graph the whole (a+1) x (2p+1) kernel.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from pixelrt.bundle.graphs import ring_state, row_state
from pixelrt.models.derive.analysis import Analysis


@dataclass
class Store:
    node: object
    channels: int
    rows: int        # ring: rows kept incl. the current one (a + 1); row state: rows above (a)
    pad: int
    state: int = -1  # index into Plan.rings / Plan.row_states
    layer: int = 0


@dataclass
class Plan:
    step_nodes: list
    row_nodes: list
    rings: list = field(default_factory=list)       # [(rows, pad, channels, [Store, ...])]
    ring_of: dict = field(default_factory=dict)     # node -> Store (reach 0)
    row_of: dict = field(default_factory=dict)      # node -> Store (reach 1)
    row_reads: set = field(default_factory=set)     # ring states the row graph reads
    redo: list = field(default_factory=list)        # step nodes recomputed on the finished pixel


def _ancestors(a: Analysis, roots) -> set:
    seen, todo = set(), list(roots)
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        todo += a.groups[n].inputs if n in a.groups else n.all_input_nodes
    return seen


def make_plan(a: Analysis, channels_of) -> Plan:
    need = _ancestors(a, [a.output])
    order = [n for n in a.gm.graph.nodes if n in need and n.op != "output"]
    step = [n for n in order if a.reach.get(n, 0) == 0 and not (a.kind[n] == "x" and a.reach.get(n) is None)]
    row = [n for n in order if a.reach.get(n) == 1]
    row_set = set(row)
    extra, todo = set(), [m for n in row for m in (a.groups[n].inputs if n in a.groups else n.all_input_nodes)]
    while todo:  # labels, embeddings, constants and shapes the row values read
        m = todo.pop()
        if m not in extra and a.kind[m] in ("ctx", "const", "meta"):
            extra.add(m)
            todo += m.all_input_nodes
    row = [n for n in order if n in row_set or n in extra]
    ring_need, row_need = {}, {}

    def want(table, m, a_rows, pad):
        r, p = table.get(m, (0, 0))
        table[m] = (max(r, a_rows), max(p, pad))

    for g, grp in a.groups.items():
        if g not in need:
            continue
        for m in grp.inputs:
            taps = grp.taps[m]
            if a.reach[g] == 0:
                past = [t for t in taps if t != (0, 0)]
                if past and a.reach[m] == 0:
                    want(ring_need, m, max(-dr for dr, _ in past), max(abs(dc) for _, dc in past))
                elif past:
                    want(row_need, m, max(-dr for dr, _ in past), max(abs(dc) for _, dc in past))
            else:
                up, pad = max([-dr for dr, _ in taps] + [0]), max([abs(dc) for _, dc in taps] + [0])
                if a.reach[m] == 0 and (m is not a.image_node or up > 0):
                    want(ring_need, m, up, pad)
                elif a.reach[m] == 1 and up > 0:
                    want(row_need, m, up, pad)
    for n in row:
        if n not in a.groups and a.reach.get(n) == 1:
            for m in n.all_input_nodes:
                if a.reach.get(m) == 0 and m is not a.image_node:
                    want(ring_need, m, 0, 0)
    for g, grp in a.groups.items():  # a row-graph conv reads a whole padded row: the store's pad covers its taps
        if g in need and a.reach[g] == 1:
            for m in grp.inputs:
                table = ring_need if a.reach[m] == 0 else row_need
                if m in table:
                    want(table, m, 0, max([abs(dc) for _, dc in grp.taps[m]] + [0]))
    plan = Plan(step, row)
    geometry: dict = {}
    for m, (up, pad) in ring_need.items():
        s = Store(m, channels_of(m), up + 1, pad)
        geometry.setdefault((s.rows, s.pad, s.channels), []).append(s)
    for k, (key, stores) in enumerate(geometry.items()):
        for layer, s in enumerate(stores):
            s.state, s.layer = k, layer
            plan.ring_of[s.node] = s
        plan.rings.append((*key, stores))
    for k, (m, (up, pad)) in enumerate(row_need.items()):
        plan.row_of[m] = Store(m, channels_of(m), up, pad, k)
    plan.row_reads = {s.state for m, s in plan.ring_of.items() if _read_by_row(a, m, row_set)}
    stored = [m for m in plan.ring_of if m in a.pixel_dependent]
    redo = set()
    todo = list(stored)
    while todo:  # the stored values' ancestors that read this pixel's last sub-pixel
        n = todo.pop()
        if n in redo or n not in a.pixel_dependent or n is a.image_node:
            continue
        redo.add(n)
        todo += a.groups[n].inputs if n in a.groups else n.all_input_nodes
    plan.redo = [n for n in step if n in redo]
    return plan


def _read_by_row(a: Analysis, m, row_set) -> bool:
    return any(u in row_set for u in m.users) or any(
        g in row_set and m in grp.inputs for g, grp in a.groups.items())


def ring_specs(plan: Plan, width: int) -> list:
    return [ring_state(f"cache_{k}", f"new_{k}", len(stores), rows, pad, width, ch)
            for k, (rows, pad, ch, stores) in enumerate(plan.rings)]


def row_specs(plan: Plan, width: int) -> list:
    return [row_state(f"rows_{s.state}", (s.rows, width + 2 * s.pad, s.channels)) for s in plan.row_of.values()]


def window_matrix(kernel: torch.Tensor, H: int, W: int, rows: int, pad: int, last_row: bool) -> torch.Tensor:
    """(rows * (2p+1) * Cin, Cout) of a kernel over a window of ``rows`` rows ending at the current row
    (``last_row``: the current row's taps left of the centre; else the rows above only)."""
    cout, cin = kernel.shape[:2]
    top = H - (rows - 1 if last_row else rows)
    win = kernel[:, :, top: top + rows, W - pad: W + pad + 1].clone()
    if last_row:
        win[:, :, -1, pad:] = 0.0  # the centre comes from this step's input; right of it is the future
    return win.permute(2, 3, 1, 0).reshape(-1, cout).float().contiguous()


def row_kernel(kernel: torch.Tensor, H: int, W: int, up: int, pad: int) -> torch.Tensor:
    """(Cout, Cin, up+1, 2p+1): rows r-up..r, columns c-p..c+p, for the row graph's conv over a whole row."""
    return kernel[:, :, H - up: H + 1, W - pad: W + pad + 1].float().contiguous()
