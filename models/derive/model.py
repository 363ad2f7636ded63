"""``DerivedModel``: a plain PyTorch module plus an adapter, implementing pixelrt's step protocol.

    model = derive(my_pixelcnn, Adapter(channels=1, levels=256, output="levels,channels"), height=28, width=28)
    pixelrt.export_model(model, image=(1, 28, 28, 256), out="bundles/mine", data="mnist.idx")

The full path is the module's own graph with every convolution replaced by its probed effective kernel (a
plain Conv over a zero-padded input: masks are folded in, no mask tensor or in-place weight rewrite is
exported); it is checked against the module itself on random images when derived. The step path (and the
row path, for vertical stacks) comes from models/derive/step.py. Before anything is exported, a PyTorch
teacher-forced step loop is compared with the full path node by node (``audit``), so a derivation that does
not hold is refused naming the first value that diverged; the exporter's validator then checks the ONNX
graphs as for every other family.
"""
from __future__ import annotations

import torch
from torch import nn

from pixelrt.bundle import ConditioningSpec
from pixelrt.models.derive.adapter import Adapter
from pixelrt.models.derive.analysis import DOCS, Analysis, DeriveError, analyse, record
from pixelrt.models.derive.plan import make_plan
from pixelrt.models.derive.step import DerivedRow, DerivedStep, _Program
from pixelrt.models.heads import gather_logp, log_softmax




class DerivedFull(_Program):
    """The module's graph with each convolution as its effective zero-padded kernel: (B, C, H, W) -> output."""

    def __init__(self, a: Analysis, adapter: Adapter):
        super().__init__()
        self._setup(a, adapter)
        self.program = []
        for n in a.gm.graph.nodes:
            if n.op == "output" or n in a.skip:
                continue
            if n in a.groups:
                g = a.groups[n]
                self.program.append(("group", n.name, [m.name for m in g.inputs], [
                    self._box(g, m) for m in g.inputs], self._buffer(g.bias)))
            elif n.op == "placeholder":
                self.program.append(("in", n.name))
            else:
                self.program.append(self._node(n))
        self.program = tuple(self.program)
        self.output = a.output.name

    def _box(self, g, m):
        rows = [d for d, _ in g.taps[m]] + [0]
        cols = [d for _, d in g.taps[m]] + [0]
        r0, r1, c0, c1 = min(rows), max(rows), min(cols), max(cols)
        box = g.kernels[m][:, :, self.H + r0: self.H + r1 + 1, self.W + c0: self.W + c1 + 1]
        return self._buffer(box), (-c0, c1, -r0, r1)

    def forward(self, x: torch.Tensor, *ctx, record: dict | None = None) -> torch.Tensor:
        env, inputs = {}, iter((x, *ctx))
        for ins in self.program:
            if ins[0] == "in":
                env[ins[1]] = next(inputs)
            elif ins[0] == "group":
                _, name, srcs, boxes, bias = ins
                out = getattr(self, bias)[None, :, None, None]
                for m, (box, pads) in zip(srcs, boxes):
                    out = out + torch.nn.functional.conv2d(torch.nn.functional.pad(env[m], pads), getattr(self, box))
                env[name] = out
            else:
                env[ins[1]] = self._run(ins, env)
        if record is not None:
            record.update(env)
        return env[self.output]


class DerivedModel(nn.Module):
    """A categorical autoregressive model from a plain module: the step protocol, derived."""

    family = "derived"

    def __init__(self, module: nn.Module, adapter: Adapter, height: int, width: int):
        super().__init__()
        self.adapter, self.height, self.width = adapter, height, width
        self.analysis = analyse(module, adapter, height, width)
        self.plan = make_plan(self.analysis, self._channels_of(module))
        self.full = DerivedFull(self.analysis, adapter)
        self.source = type(module).__name__
        self._check_full(module)

    def _channels_of(self, module):
        with torch.no_grad():
            x = torch.zeros(1, self.adapter.channels, self.height, self.width, dtype=torch.uint8)
            ctx = {k: torch.zeros(1, dtype=torch.long) for k in self.adapter.context}
            vals = record(self.analysis.gm, {self.analysis.image_node.name: self.adapter.encode(x), **ctx})
        return lambda n: int(vals[n].shape[1])

    @property
    def config(self) -> dict:
        return self.describe()["config"]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The integer image as the module's input (the adapter's ``input``)."""
        return self.adapter.encode(x)

    def logits_from_float(self, xf: torch.Tensor, **context) -> torch.Tensor:
        """The module's input -> (B, C, levels, H, W) logits (the causality audit's and the naive bench's form)."""
        return self.adapter.logits(self.full(xf, *self._ctx(context)))

    @property
    def conditioning(self) -> tuple:
        return tuple(ConditioningSpec(k, "int64", (), "class", c) for k, c in self.adapter.context.items())

    def describe(self) -> dict:
        return {"family": self.family, "config": {"module": self.source, "adapter": self.adapter.to_json(),
                                                  "height": self.height, "width": self.width,
                                                  "rings": len(self.plan.rings), "row_states": len(self.plan.row_of)}}

    def _ctx(self, context: dict) -> list:
        return [context[k] for k in self.adapter.context]

    def logits(self, x: torch.Tensor, **context) -> torch.Tensor:
        return self.logits_from_float(self.adapter.encode(x), **context)

    def log_prob(self, x: torch.Tensor, **context) -> torch.Tensor:
        logp = log_softmax(self.logits(x, **context), dim=2)
        return gather_logp(logp, x.long(), dim=2)

    def forward(self, x: torch.Tensor, **context) -> torch.Tensor:
        return self.log_prob(x, **context).flatten(1).sum(1)

    def step_module(self, image):
        self._check_image(image)
        return DerivedStep(self.analysis, self.plan, self.adapter, self.conditioning, image.width)

    def row_module(self, image):
        self._check_image(image)
        return DerivedRow(self.analysis, self.plan, self.adapter, self.conditioning, image.width)

    def _check_image(self, image):
        if (image.channels, image.height, image.width, image.levels) != \
                (self.adapter.channels, self.height, self.width, self.adapter.levels):
            raise ValueError(f"the model was derived for {self.adapter.channels}x{self.height}x{self.width} images "
                             f"with {self.adapter.levels} levels, not {image.channels}x{image.height}x{image.width} "
                             f"with {image.levels}; derive it again for that shape")

    def _check_full(self, module: nn.Module) -> None:
        """The derived full path equals the module itself (float32), on random images."""
        g = torch.Generator().manual_seed(3)
        x = torch.randint(0, self.adapter.levels, (3, self.adapter.channels, self.height, self.width), generator=g)
        ctx = [torch.randint(0, c, (3,), generator=g) for c in self.adapter.context.values()]
        with torch.no_grad():
            want = module.eval()(self.adapter.encode(x), *ctx)
            got = self.full(self.adapter.encode(x), *ctx)
        err = float((got - want).abs().max() / want.abs().max().clamp(min=1.0))
        if not err <= 1e-5:
            raise DeriveError(f"the derived full graph differs from {self.source} by {err:.2e} (relative): the traced "
                              f"graph is not the module's forward (a Python branch on values?); see {DOCS}")


def derive(module: nn.Module, adapter: Adapter, height: int, width: int, audit_images: int = 2):
    """Derive the step protocol for ``module`` on ``height`` x ``width`` images and audit it in PyTorch
    (``adapter.step == "window"``: the receptive-field-window fallback, models/derive/window.py)."""
    from pixelrt.models.derive.audit import audit

    if adapter.step == "window":
        from pixelrt.models.derive.window import WindowModel

        return WindowModel(module, adapter, height, width).eval()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of tiny ops: extra threads only contend (a 100x slowdown on a busy CPU)
    try:
        model = DerivedModel(module, adapter, height, width).eval()
        if audit_images:
            audit(model, audit_images)
    finally:
        torch.set_num_threads(threads)
    return model


__all__ = ["Adapter", "DerivedModel", "derive", "DeriveError"]
