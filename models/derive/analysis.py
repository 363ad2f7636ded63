"""Derivation, part 1: trace a plain module, probe its convolutions, and decide where each value is computed.

The module is traced with torch.fx (convolutions kept whole) and run once in float64 on an example batch,
recording every node. Then:

* every maximal run of zero-padded spatial ops (convs, pads, crops: a ``down_shift`` is a pad and a crop)
  between image-sized values becomes one *spatial group*, and its effective kernel is probed: impulses
  through the group give each tap, a zero input the bias, so masks (a mask buffer, a weight rewritten in
  forward), shifts and paddings all reduce to taps at offsets (dr, dc); the group is checked to equal that
  zero-padded convolution on random input, or refused;
* every other op on image-sized values must be per-position (``ops.POINTWISE_*``), or it is refused by name;
* each value gets a *reach*: 0 when its value at (r, c) depends on the image only up to (r, c) in raster
  order (computed per step), 1 when it reads the rest of row r too (a vertical stack: computed once per
  finished row by the row graph, used by later rows), 2 (rows below: refused).
"""
from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from pixelrt.errors import PixelrtError
from pixelrt.models.derive.adapter import Adapter
from pixelrt.models.derive.ops import GLOBAL_HINT, META_METHODS, LeafConvTracer, is_pointwise, is_spatial, \
    op_name, run_node

DOCS = "docs/convert.md"


class DeriveError(PixelrtError):
    """The module cannot be given a derived step path; the message names the node."""


@dataclass
class Group:
    """A zero-padded convolution (possibly pad -> conv -> crop) from image-sized inputs to ``out``."""

    out: fx.Node
    nodes: list                   # the group's nodes in graph order (out last)
    inputs: list                  # image-sized input nodes
    kernels: dict = field(default_factory=dict)  # input -> (Cout, Cin, 2H+1, 2W+1) float64, centre (H, W)
    bias: torch.Tensor | None = None
    taps: dict = field(default_factory=dict)     # input -> sorted list of (dr, dc) with a nonzero tap


@dataclass
class Analysis:
    gm: fx.GraphModule            # float32 traced module
    image_node: fx.Node
    context_nodes: dict           # name -> placeholder
    output: fx.Node               # the logits value
    kind: dict                    # node -> "x" (image-dependent) | "ctx" | "const" | "meta"
    reach: dict                   # image-dependent tensor node -> 0 | 1
    groups: dict                  # out node -> Group
    skip: set                     # nodes inside groups (not run on their own)
    pixel_dependent: set          # reach-0 nodes whose value at p reads p's last sub-pixel
    H: int
    W: int

    def name(self, node) -> str:
        return f"node {node.name!r} ({op_name(self.gm, node)})"


def trace(module: nn.Module) -> fx.GraphModule:
    try:
        graph = LeafConvTracer().trace(module)
    except Exception as e:  # noqa: BLE001 - control flow on values, an untraceable call
        detail = " ".join(str(e).split())[:240]
        raise DeriveError(f"{type(module).__name__} cannot be traced with torch.fx ({detail}); pixelrt derives the "
                          f"step path from the traced graph: write forward without data-dependent control flow, see "
                          f"{DOCS}") from None
    return fx.GraphModule(module, graph, type(module).__name__)


def record(gm: fx.GraphModule, inputs: dict, mods: nn.Module | None = None) -> dict:
    """Every node's value on ``inputs`` (placeholder name -> value), modules and attributes looked up in
    ``mods`` (default ``gm``; a float64 copy for the probes)."""
    env, mods = {}, mods if mods is not None else gm
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            env[node] = inputs[node.name]
        elif node.op == "output":
            env[node] = fx.node.map_arg(node.args[0], lambda n: env[n])
        else:
            env[node] = run_node(mods, node, env)
    return env


def analyse(module: nn.Module, adapter: Adapter, height: int, width: int, seed: int = 0) -> Analysis:
    gm = trace(module.eval()).eval()
    gm64 = copy.deepcopy(gm).double().eval()
    holders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if not holders:
        raise DeriveError(f"{type(module).__name__}.forward takes no input")
    image, ctx = holders[0], {n.name: n for n in holders[1:]}
    extra = sorted(set(ctx) - set(adapter.context))
    if extra:
        raise DeriveError(f"{type(module).__name__}.forward takes {', '.join(extra)} after the image; name each in the "
                          f"adapter's context with its class count, e.g. context={{'{extra[0]}': 10}}")
    g = torch.Generator().manual_seed(seed)
    B, C = 2, adapter.channels
    xs = torch.randint(0, adapter.levels, (B, C, height, width), generator=g)
    inputs = {image.name: adapter.encode(xs).double()}
    inputs.update({k: torch.randint(0, adapter.context[k], (B,), generator=g) for k in ctx})
    with torch.no_grad():
        vals = record(gm, inputs, gm64)
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    output = out_node.args[0]
    if not isinstance(output, fx.Node):
        raise DeriveError(f"{type(module).__name__}.forward must return one tensor (the logits), got "
                          f"{type(output).__name__}")
    kind = _kinds(gm, image, ctx, vals)
    a = Analysis(gm, image, ctx, output, kind, {}, {}, set(), set(), height, width)
    _find_groups(a, gm64, vals, B)
    _reaches(a, vals)
    a.pixel_dependent = _pixel_dependent(a, gm64, adapter, inputs, xs, seed)
    return a


def _kinds(gm, image, ctx, vals) -> dict:
    kind = {}
    for node in gm.graph.nodes:
        if node.op == "output":
            continue
        if node is image:
            kind[node] = "x"
        elif node.op == "placeholder":
            kind[node] = "ctx"
        else:
            deps = {kind[n] for n in node.all_input_nodes}
            kind[node] = "x" if "x" in deps else "ctx" if "ctx" in deps else "const"
            if kind[node] == "x" and (node.op == "call_method" and node.target in META_METHODS
                                      or (node.op == "call_function" and node.target is getattr)
                                      or not _has_tensor(vals[node])):
                kind[node] = "meta"  # a shape read off the image: recomputed on whatever size runs
    return kind


def _has_tensor(v) -> bool:
    if isinstance(v, torch.Tensor):
        return True
    return isinstance(v, (tuple, list)) and any(isinstance(t, torch.Tensor) for t in v)


def _on_grid(v, B, H, W) -> bool:
    return isinstance(v, torch.Tensor) and v.dim() >= 3 and v.shape[0] == B and tuple(v.shape[-2:]) == (H, W)


def _find_groups(a: Analysis, gm64, vals, B) -> None:
    H, W = a.H, a.W
    grid = {n for n, k in a.kind.items() if k == "x" and _on_grid(vals[n], B, H, W)}
    for node in a.gm.graph.nodes:
        if a.kind.get(node) != "x" or isinstance(vals[node], (tuple, list)):
            continue
        if node not in grid and not is_spatial(a.gm, node) and not _is_crop(node, vals, grid):
            raise DeriveError(f"{a.name(node)} gives a {tuple(vals[node].shape)} tensor from image-sized values: "
                              f"{GLOBAL_HINT}. pixelrt derives step graphs for causal convolutional networks only; "
                              f"see {DOCS}")
    for node in a.gm.graph.nodes:
        if node in grid and (is_spatial(a.gm, node) or _is_crop(node, vals, grid)):
            grp = _collect(a, node, grid, vals)
            _probe(a, grp, gm64, vals)
            a.groups[node] = grp
            a.skip.update(n for n in grp.nodes if n is not node)


def _is_crop(node, vals, grid) -> bool:
    """A slice that changes the spatial size (a crop), not a channel slice."""
    if node.op != "call_function" or node.target is not operator.getitem:
        return False
    src = node.args[0]
    return isinstance(src, fx.Node) and isinstance(vals.get(src), torch.Tensor) and \
        tuple(vals[src].shape[-2:]) != tuple(vals[node].shape[-2:])


def _collect(a: Analysis, out, grid, vals) -> Group:
    """The spatial ops from ``out`` back to the image-sized values they read (the group's inputs)."""
    nodes, inputs, todo = [], [], [out]
    while todo:
        n = todo.pop()
        if n in nodes:
            continue
        nodes.append(n)
        for m in n.all_input_nodes:
            k = a.kind[m]
            if k in ("const", "meta"):
                continue
            if k == "ctx":
                raise DeriveError(f"{a.name(n)} computes its weights from the conditioning input; only convolutions "
                                  f"with fixed weights are derived, see {DOCS}")
            if m in grid:
                inputs.append(m)
            elif is_spatial(a.gm, m) or _is_crop(m, vals, grid):
                todo.append(m)
            else:
                raise DeriveError(f"{a.name(m)} runs on a {tuple(vals[m].shape)} tensor inside the padded "
                                  f"convolution ending at {a.name(out)}; only pads, convolutions and crops are "
                                  f"allowed between image-sized values, see {DOCS}")
    order = {n: i for i, n in enumerate(a.gm.graph.nodes)}
    return Group(out, sorted(nodes, key=order.get), sorted(set(inputs), key=order.get))


def _run_group(grp: Group, gm64, vals, given: dict, kind: dict | None = None):
    """The group's output for ``given`` inputs; weights and masks take their recorded values, and sizes read
    off image-sized values (``x.size(-2)`` in a crop) are re-read at the size of ``given``."""
    env = dict(given)
    hw = next(iter(given.values())).shape[-2:]
    for n in grp.nodes:
        for m in n.all_input_nodes:
            if m not in env:
                env[m] = _meta(m, gm64, vals, kind, hw, env) if kind and kind.get(m) == "meta" else vals[m]
        env[n] = run_node(gm64, n, env)
    return env[grp.out]


def _meta(m, gm64, vals, kind, hw, cache):
    """A shape value recomputed as if every image-sized tensor had spatial size ``hw``."""
    if m in cache:
        return cache[m]
    if kind.get(m) == "meta":
        env = {d: _meta(d, gm64, vals, kind, hw, cache) for d in m.all_input_nodes}
        cache[m] = run_node(gm64, m, env)
    else:
        v = vals[m]
        cache[m] = v.new_zeros(*v.shape[:-2], *hw) if isinstance(v, torch.Tensor) and kind.get(m) == "x" else v
    return cache[m]


PROBE_EXTENT = 8  # taps are first looked for within +-8 rows and columns; a kernel reaching that far is re-probed


def _probe(a: Analysis, grp: Group, gm64, vals) -> None:
    """Effective kernel of each input by impulses (a zero canvas for the bias), then an exactness check on
    random input at the image's size. Kernels are stored on a (2H+1) x (2W+1) grid, tap (dr, dc) at [H+dr, W+dc]."""
    H, W = a.H, a.W
    got = want = None
    try:
        with torch.no_grad():
            for eh, ew in ((min(PROBE_EXTENT, H), min(PROBE_EXTENT, W)), (H, W)):
                if _probe_at(grp, gm64, vals, eh, ew, H, W, a.kind) or (eh, ew) == (H, W):
                    break
            rand = {m: torch.randn(2, vals[m].shape[1], H, W, dtype=torch.float64) for m in grp.inputs}
            want = _run_group(grp, gm64, vals, rand, a.kind)
            got = effective_conv(grp, rand, H, W)
    except (ValueError, RuntimeError, IndexError):
        got = None
    if got is None or got.shape != want.shape or not torch.allclose(got, want, atol=1e-7, rtol=1e-7):
        raise DeriveError(f"{a.name(grp.out)} is not a convolution with zero padding (its output is not a "
                          f"translation-equivariant linear function of {', '.join(m.name for m in grp.inputs)} "
                          f"with zeros outside the image); see {DOCS}")


def _probe_at(grp: Group, gm64, vals, eh: int, ew: int, H: int, W: int, kind: dict) -> bool:
    """Probe on a (2eh+1) x (2ew+1) canvas; True when every tap found lies strictly inside it."""
    zeros = {m: torch.zeros(1, vals[m].shape[1], 2 * eh + 1, 2 * ew + 1, dtype=torch.float64) for m in grp.inputs}
    base = _run_group(grp, gm64, vals, zeros, kind)
    if tuple(base.shape[-2:]) != (2 * eh + 1, 2 * ew + 1):
        raise ValueError("size")
    bias = base[0, :, eh, ew]
    if not torch.allclose(base[0], bias[:, None, None].expand_as(base[0]), atol=1e-9, rtol=0):
        raise ValueError("bias")
    inside = True
    for m in grp.inputs:
        cin = vals[m].shape[1]
        imp = {k: v.expand(cin, -1, -1, -1).clone() for k, v in zeros.items()}
        imp[m][torch.arange(cin), torch.arange(cin), eh, ew] = 1.0
        resp = _run_group(grp, gm64, vals, imp, kind) - bias[None, :, None, None]  # (Cin, Cout, 2eh+1, 2ew+1)
        small = resp.flip(-1).flip(-2).transpose(0, 1)  # correlation taps: (dr, dc) at [eh + dr, ew + dc]
        kernel = torch.zeros(*small.shape[:2], 2 * H + 1, 2 * W + 1, dtype=torch.float64)
        kernel[:, :, H - eh: H + eh + 1, W - ew: W + ew + 1] = small
        grp.kernels[m] = kernel
        nz = (kernel.abs().amax(dim=(0, 1)) > 0).nonzero().tolist()
        grp.taps[m] = sorted((i - H, j - W) for i, j in nz)
        inside &= all(abs(dr) < eh and abs(dc) < ew for dr, dc in grp.taps[m])
    grp.bias = bias
    return inside


def effective_conv(grp: Group, inputs: dict, H: int, W: int, dtype=torch.float64) -> torch.Tensor:
    """The group as one zero-padded correlation per input, from its probed kernels."""
    out = None
    for m, x in inputs.items():
        k = grp.kernels[m]
        rows = [d for d, _ in grp.taps[m]] or [0]
        cols = [d for _, d in grp.taps[m]] or [0]
        r0, r1, c0, c1 = min(rows + [0]), max(rows + [0]), min(cols + [0]), max(cols + [0])
        box = k[:, :, H + r0: H + r1 + 1, W + c0: W + c1 + 1].to(dtype)
        y = F.conv2d(F.pad(x.to(dtype), (-c0, c1, -r0, r1)), box)
        out = y if out is None else out + y
    return out + grp.bias.to(dtype)[None, :, None, None]


def tap_reach(base: int, dr: int, dc: int) -> int:
    """Reach of a tap at offset (dr, dc) on a value of reach ``base``: 0 per step, 1 per row, 2 refused."""
    if dr > 0:
        return 2
    if base == 0:
        return 0 if dr < 0 or dc <= 0 else 1
    return 0 if dr < 0 else 1


def _reaches(a: Analysis, vals) -> None:
    for node in a.gm.graph.nodes:
        if a.kind.get(node) != "x" or node in a.skip:
            continue
        if node is a.image_node:
            a.reach[node] = 0
        elif node in a.groups:
            grp = a.groups[node]
            r = max([tap_reach(a.reach[m], dr, dc) for m in grp.inputs for dr, dc in grp.taps[m]] or [0])
            if r >= 2:
                raise DeriveError(f"{a.name(node)} reads rows below the current one (taps "
                                  f"{sorted({t for m in grp.inputs for t in grp.taps[m]})}): it is not causal, and no "
                                  f"later shift makes it so; check its mask or padding, see {DOCS}")
            a.reach[node] = r
        elif is_pointwise(a.gm, node):
            a.reach[node] = max([a.reach[m] for m in node.all_input_nodes if m in a.reach] or [0])
        else:
            raise DeriveError(f"{a.name(node)} is not an op pixelrt can derive a step path for: it is neither a "
                              f"per-position op nor a zero-padded convolution ({GLOBAL_HINT}?); see {DOCS} for the "
                              f"ops that convert (a local op: the adapter's step='window' fallback)")
    if a.reach.get(a.output) != 0:
        raise DeriveError(f"the output {a.name(a.output)} reads the rest of the current row: either a vertical "
                          f"stack is never shifted down (the model is not causal), or one is shifted down before "
                          f"its next vertical conv, which pixelrt does not derive per layer yet (shift after the convs, or "
                          f"use the adapter's step='window' fallback); see {DOCS}, Limits")


def _pixel_dependent(a: Analysis, gm64, adapter: Adapter, inputs, xs, seed) -> set:
    """Nodes whose value at a position changes with that position's last sub-pixel (they are recomputed on
    the finished pixel before being cached)."""
    g = torch.Generator().manual_seed(seed + 1)
    i, j, C = a.H // 2, a.W // 2, adapter.channels
    found = set()
    for _ in range(3):
        xb = xs.clone()
        xb[:, C - 1, i, j] = torch.randint(0, adapter.levels, (xs.shape[0],), generator=g)
        xa = xs.clone()
        xa[:, C - 1, i, j] = (xb[:, C - 1, i, j] + 1 + torch.randint(0, adapter.levels - 1, (xs.shape[0],),
                                                                   generator=g)) % adapter.levels
        with torch.no_grad():
            va = record(a.gm, {**inputs, a.image_node.name: adapter.encode(xa).double()}, gm64)
            vb = record(a.gm, {**inputs, a.image_node.name: adapter.encode(xb).double()}, gm64)
        for n, r in a.reach.items():
            if r == 0 and isinstance(va[n], torch.Tensor) and not torch.equal(va[n][..., i, j], vb[n][..., i, j]):
                found.add(n)
    return found
