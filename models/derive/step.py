"""Derivation, part 3: the step module and the row module, as programs over the traced graph.

Both run the traced graph's own ops (activations, gates, residual adds, concatenations, label embeddings)
on per-position values: (B, C, 1, 1) tensors in the step graph, (B, C, 1, W) for one row in the row graph,
so a module written for (B, C, H, W) maps runs unchanged. Each convolution is replaced by its step form
(centre tap on this step's value + cached window), the only ops that read other positions. The programs are
plain tuples and node names (they survive the deep copy the exporter makes).
"""
from __future__ import annotations

from dataclasses import dataclass

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from pixelrt.bundle.graphs import row_graph, step_graph, step_schedule
from pixelrt.models.categorical import categorical_step
from pixelrt.models.contract import StepModule
from pixelrt.models.derive.analysis import Analysis
from pixelrt.models.derive.plan import Plan, ring_specs, row_kernel, row_specs, window_matrix


@dataclass(frozen=True)
class Ref:
    name: str


def _refs(args):
    return fx.node.map_arg(args, lambda n: Ref(n.name))


def _load(args, env):
    if isinstance(args, Ref):
        return env[args.name]
    if isinstance(args, (tuple, list)):
        return type(args)(_load(a, env) for a in args)
    if isinstance(args, dict):
        return {k: _load(v, env) for k, v in args.items()}
    if isinstance(args, slice):
        return slice(_load(args.start, env), _load(args.stop, env), _load(args.step, env))
    return args


class _Program(StepModule):
    """Shared: the traced module (for its ops), buffers of kernels, running one instruction."""

    def _setup(self, a: Analysis, adapter):
        self.gm = a.gm
        self.trace_env = None
        self.adapter = adapter
        self.H, self.W = a.H, a.W
        self._k = 0

    def _buffer(self, t: torch.Tensor) -> str:
        name = f"w_{self._k}"
        self._k += 1
        self.register_buffer(name, t.detach().float().contiguous())
        return name

    def _node(self, n: fx.Node) -> tuple:
        return ("node", n.name, n.op, n.target, _refs(n.args), _refs(n.kwargs))

    def _run(self, ins, env):
        _, name, op, target, args, kwargs = ins
        args, kwargs = _load(args, env), _load(kwargs, env)
        if op == "call_module":
            return self.gm.get_submodule(target)(*args, **kwargs)
        if op == "call_function":
            return target(*args, **kwargs)
        if op == "call_method":
            return getattr(args[0], target)(*args[1:], **kwargs)
        obj = self.gm
        for part in target.split("."):
            obj = getattr(obj, part)
        return obj


class DerivedStep(_Program):
    """One sub-pixel: ``pixel, row, col, channel, force, noise``, the labels, every state -> ``value, logp``
    and each ring state's new column."""

    def __init__(self, a: Analysis, plan: Plan, adapter, conditioning, width: int):
        super().__init__()
        self._setup(a, adapter)
        self.channels, self.levels = adapter.channels, adapter.levels
        self.context_names = [c.name for c in conditioning]
        self.rings = [(rows, pad, len(stores)) for rows, pad, _, stores in plan.rings]
        self.n_rows = len(plan.row_of)
        self._pending: dict = {}  # (ring state, Cout) -> [(layer, window matrix, term id)]
        self.flat_names = {n.name for n in plan.step_nodes if n in a.groups or flat_ok(a, n)}
        self.program = tuple(self._compile(a, plan, n) for n in plan.step_nodes)
        self.redo = tuple(self._compile(a, plan, n) for n in plan.redo)
        self.batches = tuple(self._batch(state, terms) for (state, _), terms in self._pending.items())
        del self._pending
        self.refresh = bool(self.redo) or a.image_node in plan.ring_of  # cached values need the finished pixel
        self.writes = tuple(tuple((s.node.name, s.channels) for s in stores) for *_, stores in plan.rings)
        self.output = a.output.name
        self.image = a.image_node.name
        states = ring_specs(plan, width) + row_specs(plan, width)
        self.states = tuple(states)
        self.graph = step_graph(self.channels, states, conditioning)
        self.schedule = step_schedule(self.channels, context=conditioning, row_graph="row" if plan.row_nodes else None)
        for k, (rows, pad, _) in enumerate(self.rings):
            self.register_buffer(f"cols_{k}", torch.arange(2 * pad + 1))
            self.register_buffer(f"slots_{k}", torch.arange(rows))
        self.row_pads = [s.pad for s in plan.row_of.values()]
        for k, pad in enumerate(self.row_pads):
            self.register_buffer(f"rcols_{k}", torch.arange(2 * pad + 1))

    def _compile(self, a: Analysis, plan: Plan, n: fx.Node) -> tuple:
        if n is a.image_node:
            return ("x", n.name)
        if n.op == "placeholder":
            return ("ctx", n.name)
        if n not in a.groups:
            return (*self._node(n), flat_ok(a, n))
        grp, terms = a.groups[n], []
        for m in grp.inputs:
            k, taps = grp.kernels[m], grp.taps[m]
            centre = self._buffer(k[:, :, self.H, self.W].t()) if (0, 0) in taps and a.reach[m] == 0 else None
            ring = rows = None
            past = [t for t in taps if t != (0, 0)]
            if past and a.reach[m] == 0:
                s = plan.ring_of[m]
                ring = self._ring_term(s, window_matrix(k, self.H, self.W, s.rows, s.pad, True), n, m)
            elif past:
                s = plan.row_of[m]
                rows = (s.state, self._buffer(window_matrix(k, self.H, self.W, s.rows, s.pad, False)))
            terms.append((m.name, centre, ring, rows))
        return ("group", n.name, self._buffer(grp.bias), tuple(terms))

    def _ring_term(self, store, matrix, n, m) -> str:
        """A conv's window over a ring: computed with every other window of that ring and width at the start of
        the step (no window reads this step's values), one batched MatMul per (ring, Cout)."""
        tid = f"{n.name}<{m.name}"
        terms = self._pending.setdefault((store.state, matrix.shape[1]), [])
        if all(t != tid for *_, t in terms):
            terms.append((store.layer, matrix, tid))
        return tid

    def _batch(self, state: int, terms: list) -> tuple:
        layers = [layer for layer, _, _ in terms]
        idx = None if layers == list(range(self.rings[state][2])) else self._buffer_long(torch.tensor(layers))
        return state, idx, self._buffer(torch.stack([w for _, w, _ in terms])), tuple(t for _, _, t in terms)

    def _buffer_long(self, t: torch.Tensor) -> str:
        name = f"i_{self._k}"
        self._k += 1
        self.register_buffer(name, t)
        return name

    def forward(self, pixel, row, col, channel, force, noise, *args):
        nctx = len(self.context_names)
        ctx, states = args[:nctx], args[nctx:]
        rings, row_states = states[: len(self.rings)], states[len(self.rings):]
        windows = []
        for k, (cache, (rows, pad, layers)) in enumerate(zip(rings, self.rings)):
            slots = torch.remainder(row + pad + getattr(self, f"slots_{k}") - (rows - 1), rows)
            win = cache.index_select(3, col + getattr(self, f"cols_{k}")).index_select(2, slots)
            windows.append(win.reshape(win.shape[0], layers, -1))  # (B, L, rows * k * C)
        rwin = [st.index_select(2, col + getattr(self, f"rcols_{k}")).flatten(1) for k, st in enumerate(row_states)]
        products = {}
        for state, idx, weights, ids in self.batches:
            win = windows[state] if idx is None else windows[state].index_select(1, getattr(self, idx))
            out = torch.bmm(win.transpose(0, 1), getattr(self, weights))  # (n, B, Cout)
            products.update((tid, out[t]) for t, tid in enumerate(ids))
        windows = products
        env = dict(zip(self.context_names, ctx))
        B = pixel.shape[0]
        env[self.image] = self.adapter.encode(pixel.reshape(B, self.channels, 1, 1))
        self._exec(self.program, env, windows, rwin)
        if self.trace_env is not None:  # the audit reads every value of this step (eager only)
            self.trace_env.clear()
            self.trace_env.update(env)
        out = env[self.output]
        logits = self.adapter.logits(out if out.dim() > 2 else out.reshape(-1, out.shape[1], 1, 1))
        logits = logits.reshape(B, self.channels * self.levels)
        value, logp, full = categorical_step(logits, pixel, channel, force, noise, self.channels, self.levels)
        if self.refresh:
            env[self.image] = self.adapter.encode(full.reshape(B, self.channels, 1, 1))
            self._exec(self.redo, env, windows, rwin)
            if self.trace_env is not None:
                self.trace_env.update(env)
        new = [torch.stack([env[n] if env[n].dim() == 2 else env[n].reshape(-1, c) for n, c in names], dim=1)
               for names in self.writes]
        return (value, logp, *new)

    def _forms(self, ins, env) -> dict:
        """The inputs of one op in the form it needs: convs leave flat (B, C) values; an elementwise op on
        image values takes them flat (4-D ones flattened if mixed), any other op gets (B, C, 1, 1)."""
        refs = [r for r in _node_refs(ins[4]) + _node_refs(ins[5]) if r in self.flat_names]
        vals = {r: env[r] for r in refs if isinstance(env[r], torch.Tensor)}
        if ins[6]:
            if len({v.dim() == 2 for v in vals.values()}) < 2:
                return env
            change = {r: v.reshape(-1, v.shape[1]) for r, v in vals.items() if v.dim() == 4}
        else:
            change = {r: v.reshape(-1, v.shape[1], 1, 1) for r, v in vals.items() if v.dim() == 2}
        return {**env, **change} if change else env

    def _exec(self, program, env, windows, rwin):
        for ins in program:
            if ins[0] in ("x", "ctx"):
                continue
            if ins[0] == "node":
                env[ins[1]] = self._run(ins[:6], self._forms(ins, env))
                continue
            _, name, bias, terms = ins
            out = getattr(self, bias)
            for m, centre, ring, rows in terms:
                if centre is not None:
                    v, w = env[m], getattr(self, centre)
                    out = out + (v if v.dim() == 2 else v.reshape(-1, w.shape[0])) @ w
                if ring is not None:
                    out = out + windows[ring]
                if rows is not None:
                    out = out + rwin[rows[0]] @ getattr(self, rows[1])
            env[name] = out  # flat (B, Cout): activations and adds between convs run on it as is


FLAT_MODULES = (nn.ReLU, nn.ELU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Identity, nn.Dropout,
                nn.Dropout2d)
FLAT_FUNCTIONS = {F.relu, F.elu, F.gelu, F.silu, F.leaky_relu, F.tanh, F.sigmoid, F.dropout, torch.relu, torch.tanh,
                  torch.sigmoid, operator.add, operator.sub, operator.mul, operator.neg, torch.add, torch.mul}
FLAT_METHODS = {"relu", "tanh", "sigmoid", "add", "mul", "sub", "neg"}


def flat_ok(a: Analysis, n: fx.Node) -> bool:
    """An op that gives the same result on (B, C) as on (B, C, 1, 1): elementwise on image values only (a
    label embedding of shape (B, C, 1, 1) would broadcast differently)."""
    if any(a.kind.get(m) != "x" or a.reach.get(m) is None for m in n.all_input_nodes):
        return False
    if n.op == "call_module":
        return isinstance(a.gm.get_submodule(n.target), FLAT_MODULES)
    if n.op == "call_function":
        return n.target in FLAT_FUNCTIONS
    return n.op == "call_method" and n.target in FLAT_METHODS


def _node_refs(args) -> list:
    if isinstance(args, Ref):
        return [args.name]
    if isinstance(args, (tuple, list)):
        return [r for v in args for r in _node_refs(v)]
    if isinstance(args, dict):
        return [r for v in args.values() for r in _node_refs(v)]
    return []


class DerivedRow(_Program):
    """After row q: the row values (vertical stacks) of row q for every column; out: each row state's new rows."""

    def __init__(self, a: Analysis, plan: Plan, adapter, conditioning, width: int):
        super().__init__()
        self._setup(a, adapter)
        self.channels = adapter.channels
        self.context_names = [c.name for c in conditioning]
        self.image = a.image_node.name
        rings = ring_specs(plan, width)
        self.ring_geom = [(rows, pad) for rows, pad, _, _ in plan.rings]
        self.reads = sorted(plan.row_reads)
        self.program = tuple(self._compile(a, plan, n) for n in plan.row_nodes)
        self.updates = tuple((s.node.name, s.state, s.pad) for s in plan.row_of.values())
        rows = row_specs(plan, width)
        self.graph = row_graph(self.channels, width, [rings[k] for k in self.reads] + rows, rows, conditioning)

    def _source(self, a, plan, m) -> tuple:
        if m is a.image_node and m not in plan.ring_of:
            return ("x", None, None, 0, None)
        if a.reach[m] == 0:
            s = plan.ring_of[m]
            return ("ring", s.state, s.layer, s.rows - 1, s.pad)
        s = plan.row_of.get(m)
        return ("rows", None if s is None else s.state, None, 0 if s is None else s.rows, None if s is None else s.pad)

    def _compile(self, a: Analysis, plan: Plan, n: fx.Node) -> tuple:
        if n.op == "placeholder":
            return ("in", n.name)
        fetch = tuple((m.name, *self._source(a, plan, m)) for m in (a.groups[n].inputs if n in a.groups else
                                                                       n.all_input_nodes)
                      if a.reach.get(m) == 0 and m is not a.image_node)
        if n not in a.groups:
            return ("node", n.name, n.op, n.target, _refs(n.args), _refs(n.kwargs), fetch)
        grp, terms = a.groups[n], []
        for m in grp.inputs:
            src = self._source(a, plan, m)
            up = src[3]
            pad = src[4] if src[4] is not None else max(abs(dc) for _, dc in grp.taps[m])
            terms.append((m.name, src, pad, self._buffer(row_kernel(grp.kernels[m], self.H, self.W, up, pad))))
        return ("group", n.name, self._buffer(grp.bias), tuple(terms))

    def forward(self, row_pixels, row, *args):
        nctx = len(self.context_names)
        ctx, states = args[:nctx], args[nctx:]
        rings = dict(zip(self.reads, states[: len(self.reads)]))
        row_states = states[len(self.reads):]
        env = dict(zip(self.context_names, ctx))
        env[self.image] = self.adapter.encode(row_pixels.unsqueeze(2))  # (B, C', 1, W)
        for ins in self.program:
            if ins[0] == "in":
                continue
            if ins[0] == "node":
                for m, *src in ins[6]:
                    env.setdefault(m, self._fetch(rings, src, row))
                env[ins[1]] = self._run(ins[:6], env)
                continue
            _, name, bias, terms = ins
            out = None
            for m, src, pad, kernel in terms:
                win = self._window(env, rings, row_states, m, src, pad, row)
                y = F.conv2d(win, getattr(self, kernel))
                out = y if out is None else out + y
            env[name] = out + getattr(self, bias)[None, :, None, None]
        new = []
        if self.trace_env is not None:
            self.trace_env.clear()
            self.trace_env.update(env)
        for name, k, pad in self.updates:
            cur = F.pad(env[name], (pad, pad)).permute(0, 2, 3, 1)  # (B, 1, W + 2p, C)
            new.append(torch.cat([row_states[k][:, 1:], cur], dim=1))
        return tuple(new)

    def _ring_rows(self, rings, state, layer, up, pad, row):
        rows, rpad = self.ring_geom[state]
        slots = torch.remainder(row + rpad - up + torch.arange(up + 1, device=row.device), rows)
        return rings[state].index_select(2, slots)[:, layer].permute(0, 3, 1, 2)  # (B, C, up+1, W + 2p)

    def _fetch(self, rings, src, row):
        _, state, layer, up, pad = src
        win = self._ring_rows(rings, state, layer, up, pad, row)
        return win[:, :, -1:, pad: win.shape[-1] - pad]

    def _window(self, env, rings, row_states, m, src, pad, row):
        kind, state, layer, up, spad = src
        if kind == "ring" and m != self.image:
            return self._ring_rows(rings, state, layer, up, spad, row)
        cur = F.pad(env[m], (pad, pad))  # (B, C, 1, W + 2p)
        if kind == "ring":  # the image: rows above from its ring, this row from row_pixels
            return torch.cat([self._ring_rows(rings, state, layer, up, spad, row)[:, :, :-1], cur], dim=2)
        if state is None:
            return cur
        return torch.cat([row_states[state].permute(0, 3, 1, 2), cur], dim=2)
