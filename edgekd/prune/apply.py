"""Build the pruned and the merged network of a LayerMerge plan (Kim et al., ICML 2024, section 3).

:func:`build_pruned` is the network that is fine-tuned: activations inside a segment become identities, pruned
convs (with their BN) become identities, and each segment pads once, at its first kept conv, by the segment's total
padding (later convs in the segment do not pad). A covered identity skip then reads a tensor whose border differs
from the main path's by ``Σ p`` of the kept convs it skips, so it is cropped (or, at the segment's start,
zero-padded) to match. :func:`build_merged` folds every BN, composes each segment's kept convs into one conv
(:mod:`edgekd.prune.merge`) and absorbs its covered identity skips; it computes exactly the same function as the
pruned network in eval mode.
"""

from __future__ import annotations

import copy
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from edgekd.prune.graph import Chain, Skip, analyse
from edgekd.prune.merge import AffineConv, add_identity, fold_bn, identity_conv, merge_chain
from edgekd.prune.segments import Plan, Segment


def absorbed_skips(chain: Chain, segment: Segment) -> list[Skip]:
    """The identity skips that ``segment`` covers (``st ≤ s`` and ``t ≤ end``), absorbed into its kernel."""
    return [k for k in chain.skips if k.identity and segment.st <= k.source and k.target <= segment.end]


def _segment_padding(chain: Chain, kept: tuple[int, ...]) -> int:
    padding, stride = 0, 1
    for i in kept:
        padding += stride * chain.layer(i).padding
        stride *= chain.layer(i).stride
    return padding


def _excess(chain: Chain, segment: Segment, position: int) -> int:
    """How much wider (each side) the pruned network's tensor at ``position`` inside ``segment`` is than the
    original: 0 before the first kept conv (it pads), then the padding of the kept convs still to come."""
    if not segment.kept or position < segment.kept[0]:
        return 0
    return sum(chain.layer(i).padding for i in segment.kept if i > position)


def _pad_or_crop(x: torch.Tensor, amount: int) -> torch.Tensor:
    """Zero-pad the spatial border by ``amount`` (> 0) or crop ``-amount`` (< 0) from each side."""
    if amount > 0:
        return F.pad(x, [amount] * 4)
    return x[:, :, -amount:amount, -amount:amount]


def build_pruned(chain: Chain, plan: Plan) -> fx.GraphModule:
    """The pruned-but-unmerged network of ``plan`` (module docstring), with the weights of ``chain.module``."""
    plan.check(chain)
    gm = copy.deepcopy(chain.module)
    nodes = {n.name: n for n in gm.graph.nodes}
    for segment in plan.segments:
        total = _segment_padding(chain, segment.kept)
        for order, i in enumerate(segment.kept):
            conv = gm.get_submodule(chain.layer(i).conv)
            assert isinstance(conv, nn.Conv2d)  # the chain records Conv2d layers only (graph.analyse)
            conv.padding = (total, total) if order == 0 else (0, 0)
        for skip in absorbed_skips(chain, segment):
            amount = _excess(chain, segment, skip.target) - _excess(chain, segment, skip.source)
            if amount:
                add = nodes[chain.nodes[skip.target].add]
                source = nodes[chain.nodes[skip.source].value]
                with gm.graph.inserting_before(add):
                    fixed = gm.graph.call_function(_pad_or_crop, (source, amount))
                add.replace_input_with(source, fixed)
        for i in range(segment.st + 1, segment.end + 1):
            names = chain.nodes[i]
            if i not in segment.kept:
                conv_node = nodes[names.conv]
                nodes[names.pre_add].replace_all_uses_with(conv_node.args[0])
            if i < segment.end and names.act is not None:
                act = nodes[names.act]
                act.replace_all_uses_with(act.args[0])
    return _finish(gm)


def _finish(gm: fx.GraphModule) -> fx.GraphModule:
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    return gm


def _affine(chain: Chain, net: nn.Module, index: int) -> AffineConv:
    """Layer ``index`` of ``net`` with its BN folded, at its original padding."""
    layer = chain.layer(index)
    conv = net.get_submodule(layer.conv)
    bn = net.get_submodule(layer.bn) if layer.bn is not None else None
    assert isinstance(conv, nn.Conv2d) and (bn is None or isinstance(bn, nn.BatchNorm2d))  # as the chain records
    folded = fold_bn(conv, bn)
    return AffineConv(folded.weight, folded.bias, folded.stride, layer.padding, folded.groups)


def merged_conv(chain: Chain, net: nn.Module, segment: Segment) -> AffineConv | None:
    """The one conv equal to ``segment`` of the pruned ``net`` (eval-mode BN), or None for the plain identity."""
    skips = absorbed_skips(chain, segment)
    kept = set(segment.kept)

    def wrap(a: int, b: int) -> AffineConv | None:
        body = chain_of(a, b)
        if any(k.source == a and k.target == b for k in skips):
            return add_identity(body if body is not None else identity_conv(chain.layer(a + 1).in_channels))
        return body

    def chain_of(a: int, b: int) -> AffineConv | None:
        parts, i = [], a
        while i < b:
            inner = [k for k in skips if k.source == i and k.target <= b and (k.source, k.target) != (a, b)]
            if inner:
                target = max(k.target for k in inner)
                unit = wrap(i, target)
                if unit is not None:
                    parts.append(unit)
                i = target
            else:
                i += 1
                if i in kept:
                    parts.append(_affine(chain, net, i))
        return merge_chain(parts) if parts else None

    return wrap(segment.st, segment.end)


def build_merged(chain: Chain, plan: Plan, pruned: nn.Module | None = None) -> fx.GraphModule:
    """The merged network of ``plan``: one conv per segment, BN folded, covered identity skips absorbed.

    ``pruned`` supplies the weights (the fine-tuned network of :func:`build_pruned`; default ``chain.module``).
    """
    plan.check(chain)
    source = pruned if pruned is not None else chain.module
    gm = copy.deepcopy(chain.module)
    unexpected = gm.load_state_dict(source.state_dict(), strict=False).unexpected_keys
    if unexpected:
        raise ValueError(f"the pruned network has weights the analysed one lacks: {unexpected[:3]}")
    graph = gm.graph
    nodes = {n.name: n for n in graph.nodes}
    values = {0: nodes[chain.nodes[0].value]}
    with torch.no_grad():
        for segment in plan.segments:
            st, end = segment.st, segment.end
            names = chain.nodes[end]
            anchor = nodes[names.value]
            absorbed = {(k.source, k.target) for k in absorbed_skips(chain, segment)}
            affine = merged_conv(chain, source, segment)
            with graph.inserting_before(anchor.next):
                new_nodes: list[fx.Node] = []
                if affine is None:
                    out = nodes[chain.nodes[st + 1].conv].args[0]
                else:
                    target = f"merged_{st}_{end}"
                    gm.add_submodule(target, affine.to_module())
                    out = graph.call_module(target, (nodes[chain.nodes[st + 1].conv].args[0],))
                    new_nodes.append(out)
                skip = next((k for k in chain.skips if k.target == end), None)
                if skip is not None and (skip.source, skip.target) not in absorbed:
                    add = nodes[names.add]
                    pre = nodes[names.pre_add]
                    other = [n for n in add.all_input_nodes if n is not pre][0]
                    other = values[skip.source] if skip.identity else other
                    out = graph.call_function(operator.add, (out, other))
                    new_nodes.append(out)
                if names.act is not None:
                    act = nodes[names.act]
                    out = graph.create_node(act.op, act.target, (out,), dict(act.kwargs))
                    new_nodes.append(out)
            if out is not anchor:
                anchor.replace_all_uses_with(out, delete_user_cb=lambda user: user not in new_nodes)
            values[end] = out
    return _finish(gm)


def merged_model(base: dict[str, Any], plan: list[list[Any]], input_shape: list[int]) -> fx.GraphModule:
    """The structure of a stored merged network, for :func:`edgekd.models.create` (weights loaded afterwards).

    A torch artifact of a merged network has the spec ``{"name": "edgekd.prune.apply:merged_model", "kwargs":
    {"base": <spec of the unpruned model>, "plan": Plan.to_json(), "input_shape": [C, H, W]}}``: the base model is
    built with fresh weights, analysed on a zero batch of ``input_shape`` and merged by ``plan``; its state dict then
    matches the stored merged weights (a merged network's structure does not depend on the weights).
    """
    from edgekd.models import create

    with torch.random.fork_rng(devices=[]):  # fresh weights, overwritten by the caller: leave the global RNG be
        net = create(base["name"], **base["kwargs"])
    chain = analyse(net, torch.zeros(1, *(int(d) for d in input_shape)))
    return build_merged(chain, Plan.from_json(plan)).eval()
