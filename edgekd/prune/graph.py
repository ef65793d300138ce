"""torch.fx analysis of a CNN into the conv chain that LayerMerge compresses (Kim et al., ICML 2024, section 3).

The network body is read as a chain of ``L`` convolutions. *Position* ``i`` (1 ≤ i ≤ L) is the output of layer
``i``: ``conv_i → [BN_i] → [+ skip] → [activation_i]``; position 0 is the input of ``conv_1``. The trunk is the
path from the input to the output with the most convolutions (so a ResNet's 1×1 downsample, which has fewer, is a
skip branch). Along it:

- a residual *skip* ``(s, t)`` adds the value at position ``s`` (identity) or a branch computed from it (projection:
  e.g. 1×1 conv + BN) to the BN output of layer ``t``, before its activation;
- anything else on the trunk between two layers (pooling, dropout, a stray BN) makes the position before it a
  *barrier* that no segment crosses; what follows the last layer is the head, left alone.

The model must trace with ``torch.fx.symbolic_trace``; layers need square kernels/strides, symmetric zero padding and
no dilation; skips must nest (laminar), and no intermediate tensor of a layer may be read elsewhere. Anything else is
a :class:`~edgekd.errors.UserError` naming the node and why.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from edgekd.errors import UserError

ACTIVATION_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish, nn.SiLU, nn.GELU, nn.Hardtanh, nn.ELU,
                      nn.Mish, nn.Sigmoid, nn.Tanh)
ACTIVATION_FUNCTIONS: dict[object, type[nn.Module]] = {
    F.relu: nn.ReLU, torch.relu: nn.ReLU, F.relu6: nn.ReLU6, F.silu: nn.SiLU, F.gelu: nn.GELU,
    F.hardswish: nn.Hardswish, torch.sigmoid: nn.Sigmoid, torch.tanh: nn.Tanh, F.leaky_relu: nn.LeakyReLU,
}
_ADDS = (operator.add, operator.iadd, torch.add)


@dataclass(frozen=True)
class Layer:
    """Layer ``index`` of the chain: its conv (and BN) module paths, geometry and activation at its position."""

    index: int
    conv: str
    bn: str | None
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    groups: int
    input_shape: tuple[int, ...]
    activation: nn.Module | None = field(compare=False, repr=False)

    @property
    def depthwise(self) -> bool:
        return self.groups == self.in_channels == self.out_channels

    @property
    def droppable(self) -> bool:
        """Can become the identity (same channels, stride 1, shape-preserving padding): not "irreducible"."""
        return self.in_channels == self.out_channels and self.stride == 1 and self.kernel == 2 * self.padding + 1


@dataclass(frozen=True)
class Skip:
    """A residual add: the value at position ``source`` (identity) or a branch of it (projection) joins at
    ``target``, after BN and before the activation of layer ``target``."""

    source: int
    target: int
    identity: bool


@dataclass(frozen=True)
class PositionNodes:
    """Names of the fx nodes of one position in :attr:`Chain.module`."""

    conv: str | None
    pre_add: str | None
    add: str | None
    act: str | None
    value: str


@dataclass(frozen=True, eq=False)
class Chain:
    """The analysed network: ``layers[i-1]`` is layer ``i``; ``shapes[i]`` the example shape at position ``i``
    (``layers[i].input_shape`` differs from ``shapes[i]`` after a barrier, e.g. a pooling)."""

    module: fx.GraphModule
    layers: tuple[Layer, ...]
    skips: tuple[Skip, ...]
    barriers: frozenset[int]
    shapes: tuple[tuple[int, ...], ...]
    nodes: tuple[PositionNodes, ...]
    #: the traced model and example batch, so that a pickled chain (e.g. sent to an executor task) is re-analysed
    source: tuple[nn.Module, torch.Tensor] | None = None

    def __reduce__(self) -> tuple[Any, tuple[nn.Module, torch.Tensor]]:
        """Pickled as ``analyse(model, example)``: the traced graph and its nodes do not pickle, the model does."""
        if self.source is None:
            raise TypeError("a Chain made without its source model cannot be pickled")
        return analyse, self.source

    @property
    def depth(self) -> int:
        """Number of layers ``L`` (positions are 0..L)."""
        return len(self.layers)

    def layer(self, index: int) -> Layer:
        """Layer ``index`` (1-based)."""
        return self.layers[index - 1]


def _kind(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        module = modules[str(node.target)]
        if isinstance(module, nn.Conv2d):
            return "conv"
        if isinstance(module, nn.BatchNorm2d):
            return "bn"
        if isinstance(module, ACTIVATION_MODULES):
            return "act"
    if node.op == "call_function":
        if node.target in ACTIVATION_FUNCTIONS:
            return "act"
        if node.target in _ADDS and len(node.all_input_nodes) == 2 and len(node.args) == 2 and not node.kwargs:
            return "add"
    if node.op == "call_method" and node.target in ("add", "add_") and len(node.all_input_nodes) == 2:
        return "add"
    return "other"


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(copy.deepcopy(model).eval())
    except Exception as exc:  # fx raises TraceError, TypeError, NotImplementedError... on dynamic control flow
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"LayerMerge: torch.fx cannot trace {type(model).__name__} ({first})") from None


def _trunk(graph: fx.Graph, modules: dict[str, nn.Module]) -> list[fx.Node]:
    """The input→output path with the most convolutions (ties between two inputs of a node are an error)."""
    score: dict[fx.Node, int] = {}
    for node in graph.nodes:
        inputs = node.all_input_nodes
        score[node] = max((score[n] for n in inputs), default=0) + (_kind(node, modules) == "conv")
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UserError(f"LayerMerge: the model must take one input tensor, its graph has {len(placeholders)}")
    (output,) = [n for n in graph.nodes if n.op == "output"]
    path, node = [], output
    while node.op != "placeholder":
        inputs = node.all_input_nodes
        if not inputs:
            raise UserError(f"LayerMerge: node {node.name!r} on the main path does not depend on the input")
        best = max(score[n] for n in inputs)
        top = [n for n in inputs if score[n] == best]
        if len(top) > 1 and best > 0:
            raise UserError(f"LayerMerge: node {node.name!r} joins branches with the same number of convolutions "
                            f"({', '.join(n.name for n in top)}); only a conv chain with residual skips is supported")
        node = top[0]
        path.append(node)
    return list(reversed(path))


def _conv_geometry(node: fx.Node, conv: nn.Conv2d) -> tuple[int, int, int]:
    """``(kernel, stride, padding)`` of a square, undilated, zero-padded conv, or a UserError."""
    def square(value: object, what: str) -> int:
        values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        if len(set(values)) != 1:
            raise UserError(f"LayerMerge: conv node {node.name!r} has a non-square {what} {value}")
        return int(values[0])

    kernel = square(conv.kernel_size, "kernel")
    if conv.padding == "same":
        if kernel % 2 == 0:
            raise UserError(f"LayerMerge: conv node {node.name!r} has 'same' padding with an even kernel")
        padding = (kernel - 1) // 2
    elif conv.padding == "valid":
        padding = 0
    else:
        padding = square(conv.padding, "padding")
    if square(conv.dilation, "dilation") != 1 or conv.padding_mode != "zeros":
        raise UserError(f"LayerMerge: conv node {node.name!r} is dilated or not zero-padded; cannot be merged")
    return kernel, square(conv.stride, "stride"), padding


def _activation(node: fx.Node, modules: dict[str, nn.Module]) -> nn.Module:
    if node.op == "call_module":
        return copy.deepcopy(modules[str(node.target)])
    return ACTIVATION_FUNCTIONS[node.target]()


def analyse(model: nn.Module, example: torch.Tensor) -> Chain:
    """Trace ``model`` and read its conv chain, skips and barriers (module docstring); ``example`` is one input
    batch (float32 NCHW, already normalised as the network expects) used for the shapes."""
    gm = _trace(model)
    modules = dict(gm.named_modules())
    trunk = _trunk(gm.graph, modules)
    on_trunk = set(trunk)
    value_nodes: list[fx.Node] = [trunk[0]]
    groups: list[dict[str, fx.Node]] = [{}]
    barriers: set[int] = set()
    stage, glue = "glue", False
    for node in trunk[1:]:
        kind = _kind(node, modules)
        current = groups[-1]
        if kind == "conv":
            if glue and len(groups) > 1:
                barriers.add(len(groups) - 1)
            groups.append({"conv": node})
            value_nodes.append(node)
            stage, glue = "conv", False
        elif stage != "glue" and (kind, stage) in {("bn", "conv"), ("add", "conv"), ("add", "bn"), ("act", "conv"),
                                                   ("act", "bn"), ("act", "add")}:
            current[kind] = node
            value_nodes[-1] = node
            stage = kind
        elif kind == "add":
            raise UserError(f"LayerMerge: residual add {node.name!r} does not directly follow a convolution (and "
                            "its BN); only post-conv adds before the activation are supported")
        else:
            if len(groups) == 1:
                value_nodes[0] = node
            stage, glue = "glue", True
    if len(groups) == 1:
        raise UserError(f"LayerMerge: {type(model).__name__} has no Conv2d on its main path")
    depth = len(groups) - 1
    position_of = {node: i for i, node in enumerate(value_nodes)}

    skips: list[Skip] = []
    branch_nodes: set[fx.Node] = set()
    for index in range(1, depth + 1):
        add = groups[index].get("add")
        if add is None:
            continue
        previous = groups[index].get("bn", groups[index]["conv"])
        (other,) = [n for n in add.all_input_nodes if n is not previous] or [previous]
        node, branch = other, []
        while node not in on_trunk:
            if len(node.all_input_nodes) != 1 or len(node.users) != 1:
                raise UserError(f"LayerMerge: node {node.name!r} on the skip into {add.name!r} is not a single "
                                "chain of one-input operations")
            branch.append(node)
            node = node.all_input_nodes[0]
        if node not in position_of or position_of[node] >= index:
            raise UserError(f"LayerMerge: the skip into {add.name!r} starts at {node.name!r}, which is not the "
                            "output of an earlier conv layer")
        branch_nodes.update(branch)
        skips.append(Skip(position_of[node], index, identity=not branch))
    for a in skips:
        for b in skips:
            if a.source < b.source < a.target < b.target:
                raise UserError(f"LayerMerge: residual skips {a.source}->{a.target} and {b.source}->{b.target} "
                                "cross; skips must nest")

    allowed = on_trunk | branch_nodes
    for index, group in enumerate(groups):
        value = value_nodes[index]
        for node in group.values():
            users = set(node.users)
            if node is value:
                if index == depth:
                    continue
                stray = [u for u in users if u not in allowed]
            else:
                stray = [u for u in users if u not in on_trunk] if len(users) > 1 else []
            if stray:
                raise UserError(f"LayerMerge: the output of {node.name!r} is also read by {stray[0].name!r}, which "
                                "is neither the next layer nor a residual skip")

    ShapeProp(gm).propagate(example)
    layers, nodes = [], [PositionNodes(None, None, None, None, value_nodes[0].name)]
    for index in range(1, depth + 1):
        group = groups[index]
        conv_node = group["conv"]
        conv = modules[str(conv_node.target)]
        kernel, stride, padding = _conv_geometry(conv_node, conv)
        act = group.get("act")
        conv_input = conv_node.args[0]
        assert isinstance(conv_input, fx.Node)  # a call_module node's first argument is the node feeding it
        layers.append(Layer(index, str(conv_node.target), str(group["bn"].target) if "bn" in group else None,
                            conv.in_channels, conv.out_channels, kernel, stride, padding, conv.groups,
                            tuple(int(d) for d in conv_input.meta["tensor_meta"].shape),
                            _activation(act, modules) if act is not None else None))
        pre_add = group.get("bn", conv_node)
        nodes.append(PositionNodes(conv_node.name, pre_add.name, group["add"].name if "add" in group else None,
                                   act.name if act is not None else None, value_nodes[index].name))
    shapes = tuple(tuple(int(d) for d in value_nodes[i].meta["tensor_meta"].shape) for i in range(depth + 1))
    return Chain(gm, tuple(layers), tuple(skips), frozenset(barriers), shapes, tuple(nodes), (model, example))
