"""What the derivation knows about torch.fx nodes: per-position ops, zero-padded spatial ops, and how to run
one node from an environment of values (shared by the probes, the derived full path and the step path)."""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

# modules and functions whose output at a position reads only their inputs at that position
POINTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.Identity,
                     nn.Dropout, nn.Dropout2d, nn.Softplus, nn.PReLU, nn.Hardtanh, nn.Mish, nn.BatchNorm2d)
POINTWISE_FUNCTIONS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.neg, operator.pow, operator.iadd,
    operator.imul, torch.add, torch.sub, torch.mul, torch.div, torch.neg, torch.tanh, torch.sigmoid, torch.relu,
    torch.exp, torch.log, torch.abs, torch.square, torch.sqrt, torch.clamp, torch.where, torch.maximum,
    torch.minimum, F.relu, F.relu6, F.elu, F.gelu, F.silu, F.leaky_relu, F.tanh, F.sigmoid, F.softplus,
    F.dropout, F.dropout2d, F.hardtanh, F.mish, F.glu, torch.cat, torch.chunk, torch.split, torch.unsqueeze,
    torch.ones_like, torch.zeros_like, torch.full_like,
}
POINTWISE_METHODS = {"relu", "tanh", "sigmoid", "exp", "log", "abs", "neg", "add", "sub", "mul", "div", "pow",
                     "clamp", "chunk", "split", "contiguous", "unsqueeze", "float", "to", "type_as", "view",
                     "reshape", "size", "dim", "sigmoid_", "relu_", "add_", "mul_", "transpose", "permute"}
META_METHODS = {"size", "dim"}
CHANNEL_DIM_ARG = {torch.cat: ("dim", 1), torch.chunk: ("dim", 2), torch.split: ("dim", 2), F.glu: ("dim", 1)}
# linear, translation-equivariant with zero padding: their effective kernels are probed
SPATIAL_MODULES = (nn.Conv2d, nn.ZeroPad2d, nn.ConstantPad2d, nn.ConvTranspose2d)
SPATIAL_FUNCTIONS = {F.conv2d, torch.conv2d, F.pad, F.conv_transpose2d}
GLOBAL_HINT = "it mixes positions in a way that is not a zero-padded convolution (a reduction, pooling, a " \
              "recurrence or attention)"


def op_name(gm: fx.GraphModule, node: fx.Node) -> str:
    """A node as a user reads it: ``layers.3 (Conv2d)``, ``torch.mean``, ``.mean()``."""
    if node.op == "call_module":
        return f"{node.target} ({type(gm.get_submodule(node.target)).__name__})"
    if node.op == "call_function":
        mod = getattr(node.target, "__module__", "") or ""
        name = getattr(node.target, "__name__", str(node.target))
        return f"{mod.replace('torch.nn.functional', 'F').replace('_operator', 'operator')}.{name}".lstrip(".")
    if node.op == "call_method":
        return f".{node.target}()"
    return f"{node.op} {node.target}"


def is_spatial(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        return isinstance(m, SPATIAL_MODULES) and not (isinstance(m, nn.ConstantPad2d) and m.value != 0)
    if node.op == "call_function":
        if node.target is F.pad:
            mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
            value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else 0)
            return mode == "constant" and not value
        return node.target in SPATIAL_FUNCTIONS
    return False


def is_pointwise(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), POINTWISE_MODULES)
    if node.op == "call_function":
        if node.target is operator.getitem:
            return True  # on tuples, or a channel slice (a spatial slice changes the size: a crop)
        if node.target in CHANNEL_DIM_ARG:
            key, pos = CHANNEL_DIM_ARG[node.target]
            dim = node.kwargs.get(key, node.args[pos] if len(node.args) > pos else 0)
            return dim == 1
        return node.target in POINTWISE_FUNCTIONS
    if node.op == "call_method":
        return node.target in POINTWISE_METHODS
    return False


def load_arg(a, env: dict):
    return fx.node.map_arg(a, lambda n: env[n])


def run_node(gm: fx.GraphModule, node: fx.Node, env: dict):
    """Execute one call node of ``gm`` on the values in ``env``."""
    args, kwargs = load_arg(node.args, env), load_arg(node.kwargs, env)
    if node.op == "call_module":
        return gm.get_submodule(node.target)(*args, **kwargs)
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    if node.op == "get_attr":
        obj = gm
        for part in node.target.split("."):
            obj = getattr(obj, part)
        return obj
    raise ValueError(f"cannot run {node.op} node {node.name}")


class LeafConvTracer(fx.Tracer):
    """torch.fx tracer that keeps every convolution (nn.Conv2d and its subclasses, e.g. a user's
    MaskedConv2d that rewrites its weight in forward) as one node, probed as a whole."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, SPATIAL_MODULES + POINTWISE_MODULES) or super().is_leaf_module(m, qualname)
