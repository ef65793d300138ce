"""Candidate segments, their kernel options, and plans (LayerMerge, Kim et al., ICML 2024, sections 3–4).

A *segment* ``(st, end)``, ``0 ≤ st < end ≤ L``, replaces layers ``st+1 … end`` by one conv followed by the
activation of layer ``end``; the activations of positions ``st+1 … end-1`` are removed. It is a candidate when:

- it crosses no barrier (``st < b < end`` for a barrier ``b``);
- it respects every skip ``(s, t)``: never crossing (``st < s < end < t`` or ``s < st < t < end``); a projection
  skip must lie outside it or around it (``st ≥ s`` and ``end ≤ t``: the add stays, reading the materialised value
  at ``s``); an identity skip may also be covered (``st ≤ s`` and ``t ≤ end``), and is then absorbed into the kernel;
- at least one *option* exists. An option keeps a subset of the layers — every irreducible one (channels change,
  stride > 1, or shape-changing padding) and any of the others, the rest becoming identities — such that after a
  kept strided conv only unpadded 1×1 convs are kept. Its kernel is ``Σk − n + 1`` over the ``n`` kept convs, its
  stride the product of theirs, and it is depthwise iff every kept conv is. Of the subsets giving the same
  ``(kernel, depthwise)``, the one with the largest sum of L1 norms of the kept conv weights is taken, as the
  paper's code does.

The activation after a merged conv is layer ``end``'s own, and none at a linear position (MobileNetV2's
projections). The paper's code inserts an activation there when a segment merges several layers; edgekd does not,
so that every plan's network differs from the original only by what the plan removes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from edgekd.errors import UserError
from edgekd.prune.graph import Chain


@dataclass(frozen=True, order=True)
class Segment:
    """Layers ``st+1 … end`` merged into one conv; ``kept`` are the layer indices kept (empty: the identity)."""

    st: int
    end: int
    kept: tuple[int, ...]


@dataclass(frozen=True)
class Option:
    """One way to realise a segment: the merged conv's kernel, stride, padding and whether it is depthwise."""

    segment: Segment
    kernel: int
    stride: int
    padding: int
    depthwise: bool

    @property
    def key(self) -> str:
        """A stable identifier, e.g. ``3-7:k5:dense``."""
        return f"{self.segment.st}-{self.segment.end}:k{self.kernel}:{'dw' if self.depthwise else 'dense'}"


def valid_structure(chain: Chain, st: int, end: int) -> bool:
    """The barrier and skip rules of the module docstring (options aside)."""
    if not 0 <= st < end <= chain.depth:
        return False
    if any(st < b < end for b in chain.barriers):
        return False
    for skip in chain.skips:
        s, t = skip.source, skip.target
        if end <= s or st >= t or (st >= s and end <= t):
            continue  # outside, or inside the skipped range
        if skip.identity and st <= s and t <= end:
            continue  # covered: absorbed into the kernel
        return False
    return True


def option_of(chain: Chain, st: int, end: int, kept: Iterable[int]) -> Option | None:
    """The option that keeps ``kept`` in ``(st, end)``, or None if it breaks the stride rule or drops an
    irreducible layer."""
    kept = tuple(sorted(kept))
    if not kept or any(not st < i <= end for i in kept):
        return None
    for i in range(st + 1, end + 1):
        if i not in kept and not chain.layer(i).droppable:
            return None
    kernel, stride, padding = 1, 1, 0
    for i in kept:
        layer = chain.layer(i)
        if stride > 1 and (layer.kernel != 1 or layer.padding != 0):
            return None
        kernel += stride * (layer.kernel - 1)
        padding += stride * layer.padding
        stride *= layer.stride
    depthwise = all(chain.layer(i).depthwise for i in kept)
    return Option(Segment(st, end, kept), kernel, stride, padding, depthwise)


def l1_norms(chain: Chain) -> dict[int, float]:
    """``{layer: Σ|W|}`` of every layer's conv weight (the paper's tie-break between subsets)."""
    norms = {}
    for layer in chain.layers:
        conv = chain.module.get_submodule(layer.conv)
        assert isinstance(conv, nn.Conv2d)
        norms[layer.index] = float(conv.weight.detach().abs().sum())
    return norms


def segment_options(chain: Chain, st: int, end: int, *, max_kernel: int | None = None,
                    norms: dict[int, float] | None = None) -> list[Option]:
    """Every ``(kernel, depthwise)`` option of segment ``(st, end)`` with its max-L1 kept subset, sorted by kernel;
    empty if the segment is not a candidate. ``max_kernel`` drops options with a larger merged kernel (the paper
    keeps all; large kernels are rarely fast). ``norms``: :func:`l1_norms`, computed here if not given."""
    if not valid_structure(chain, st, end):
        return []
    norms = norms if norms is not None else l1_norms(chain)
    indices = range(st + 1, end + 1)
    forced = [i for i in indices if not chain.layer(i).droppable]
    classes: dict[tuple[int, bool], list[int]] = {}
    for i in indices:
        if chain.layer(i).droppable:
            layer = chain.layer(i)
            classes.setdefault((layer.kernel, layer.depthwise), []).append(i)
    for members in classes.values():
        members.sort(key=lambda i: -norms[i])
    best: dict[tuple[int, bool], tuple[float, Option]] = {}
    for counts in itertools.product(*(range(len(m) + 1) for m in classes.values())):
        kept = forced + [i for members, n in zip(classes.values(), counts) for i in members[:n]]
        option = option_of(chain, st, end, kept)
        if option is None or (max_kernel is not None and option.kernel > max_kernel):
            continue
        score = sum(norms[i] for i in option.segment.kept)
        key = (option.kernel, option.depthwise)
        if key not in best or score > best[key][0]:
            best[key] = (score, option)
    return sorted((o for _, o in best.values()), key=lambda o: (o.kernel, not o.depthwise))


def candidate_options(chain: Chain, *, max_kernel: int | None = None) -> list[Option]:
    """All options of all candidate segments, ordered by ``(end, st, kernel)``."""
    options, norms = [], l1_norms(chain)
    for end in range(1, chain.depth + 1):
        for st in range(end):
            options += segment_options(chain, st, end, max_kernel=max_kernel, norms=norms)
    return options


def drop_changes(chain: Chain) -> list[tuple[str, Segment]]:
    """``(key, segment)`` of every prunable layer's removal (the layer-pruning-only baseline's items)."""
    return [(f"drop-{layer.index}", Segment(layer.index - 1, layer.index, ()))
            for layer in chain.layers if layer.droppable]


@dataclass(frozen=True)
class Plan:
    """Consecutive segments covering positions ``0 … L``: what to prune and merge."""

    segments: tuple[Segment, ...]

    @classmethod
    def unpruned(cls, chain: Chain) -> Plan:
        """Every layer its own segment, every conv and activation kept: the original network."""
        return cls(tuple(Segment(i - 1, i, (i,)) for i in range(1, chain.depth + 1)))

    @classmethod
    def single(cls, chain: Chain, change: Segment) -> Plan:
        """The original network with only ``change`` applied (what the importance of an entry measures)."""
        before = [Segment(i - 1, i, (i,)) for i in range(1, change.st + 1)]
        after = [Segment(i - 1, i, (i,)) for i in range(change.end + 1, chain.depth + 1)]
        return cls(tuple(before + [change] + after))

    @classmethod
    def layer_pruned(cls, chain: Chain, dropped: Iterable[int]) -> Plan:
        """The layer-pruning-only plan: every activation kept, the convs of ``dropped`` become identities."""
        dropped = set(dropped)
        bad = [i for i in dropped if not chain.layer(i).droppable]
        if bad:
            raise UserError(f"LayerMerge: layer {bad[0]} cannot be pruned (it changes channels or resolution)")
        return cls(tuple(Segment(i - 1, i, () if i in dropped else (i,)) for i in range(1, chain.depth + 1)))

    def to_json(self) -> list[list[Any]]:
        """``[[st, end, [kept...]], ...]``: what a stage stores beside a merged network's weights."""
        return [[s.st, s.end, list(s.kept)] for s in self.segments]

    @classmethod
    def from_json(cls, data: Sequence[Sequence[Any]]) -> Plan:
        """The plan of :meth:`to_json` (checked against a chain by :meth:`check`)."""
        try:
            return cls(tuple(Segment(int(st), int(end), tuple(int(i) for i in kept)) for st, end, kept in data))
        except (TypeError, ValueError) as exc:
            raise UserError(f"LayerMerge plan: expected [[st, end, [kept...]], ...], got {data!r:.80}") from exc

    @property
    def positions(self) -> tuple[int, ...]:
        """Positions whose activation is kept (segment ends), with 0."""
        return (0,) + tuple(s.end for s in self.segments)

    @property
    def kept(self) -> frozenset[int]:
        """Layers whose conv is kept."""
        return frozenset(i for s in self.segments for i in s.kept)

    def check(self, chain: Chain) -> None:
        """UserError unless the segments chain ``0 → L`` and each is a candidate (an empty segment, a pruned
        layer kept as its own segment, is allowed when its layer is droppable)."""
        position = 0
        for segment in self.segments:
            if segment.st != position or not valid_structure(chain, segment.st, segment.end):
                raise UserError(f"LayerMerge plan: segment {segment.st}->{segment.end} is not a candidate here")
            empty_ok = not segment.kept and all(chain.layer(i).droppable
                                                for i in range(segment.st + 1, segment.end + 1))
            if not empty_ok and option_of(chain, segment.st, segment.end, segment.kept) is None:
                raise UserError(f"LayerMerge plan: keeping layers {list(segment.kept)} in segment "
                                f"{segment.st}->{segment.end} breaks the stride or irreducible-layer rule")
            position = segment.end
        if position != chain.depth:
            raise UserError(f"LayerMerge plan ends at position {position}, not at the last layer {chain.depth}")
