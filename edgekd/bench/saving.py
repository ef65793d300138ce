"""Latency saved per layer by INT8: an fp32 and an INT8 per-layer profile of the same model joined node by node.

Both profiles come from the runtime's own profiler (:func:`edgekd.bench.profile.profile_artifact`); each row names
the source-graph nodes it stands for (``nodes``, the compute node it contains first) and its ``role``
(:data:`edgekd.runtimes._profile.ROLES`). Rows of either profile that share their first node name are one entry
(then a row left without a partner joins one of the other profile sharing any name), so a Conv
fused with its Relu in the fp32 graph (ONNX Runtime names that kernel after the Relu) and the QLinearConv of the
INT8 graph (named after the Conv) meet at the Conv's name; an OpenVINO row of an IR converted from ONNX meets the
ONNX Runtime names the same way. Quantize/dequantize rows and layout rows the runtime inserted form two entries of
their own (``quantize``, ``layout``): the INT8 graph's added cost that no single layer carries.

Per entry: ``float_ms`` and ``int8_ms`` (medians per inference, summed over the entry's rows), ``saved_ms =
float_ms − int8_ms`` (negative: slower in INT8). What does not map: an operator fused into a kernel in one graph
but run on its own in the other (a residual Add fused into a float Conv, a QLinearAdd in INT8) is an entry with
0 ms on the fused side, its time counted in the kernel's entry; rows whose names meet in neither profile (graphs
of two different conversions, e.g. an IR converted from PyTorch against an ONNX model) stay separate entries.

Use::

    record = latency_saved(float_rows, int8_rows)
    [e["node"] for e in record["nodes"] if e["saved_ms"] < 0]   # the layers slower in INT8
"""

from __future__ import annotations

from typing import Any

OVERHEAD = ("quantize", "layout")
"""Roles whose rows are summed into one entry each rather than joined by name."""


def _names(row: dict[str, Any]) -> list[str]:
    names = row.get("nodes") or row.get("onnx_nodes") or [row["layer"]]
    return [str(n) for n in names]


def _role(row: dict[str, Any]) -> str:
    return str(row.get("role") or "other")


def _groups(rows: list[tuple[str, dict[str, Any]]]) -> list[list[int]]:
    """Indices of ``rows`` (``(side, row)``) joined into entries, each in row order: rows sharing their first node
    name (the compute node, or the node itself) are one entry; then an entry with rows on one side only joins one
    of the other side only that shares any node name with it (an operator both graphs fused, named differently)."""
    parent = list(range(len(rows)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, (_, row) in enumerate(rows):
        name = _names(row)[0]
        if name in first:
            parent[root(i)] = root(first[name])
        else:
            first[name] = i

    def sides(r: int) -> set[str]:
        return {rows[i][0] for i in range(len(rows)) if root(i) == r}

    def names(r: int) -> set[str]:
        return {n for i in range(len(rows)) if root(i) == r for n in _names(rows[i][1])}

    lonely = [r for r in dict.fromkeys(root(i) for i in range(len(rows))) if len(sides(r)) == 1]
    for r in lonely:
        if root(r) != r or len(sides(r)) != 1:
            continue
        match = next((o for o in lonely if root(o) == o and sides(o) == {"float", "int8"} - sides(r)
                      and names(r) & names(o)), None)
        if match is not None:
            parent[match] = r
    groups: dict[int, list[int]] = {}
    for i in range(len(rows)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def _entry(members: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    float_ms = sum(r["time_ms"] for side, r in members if side == "float")
    int8_ms = sum(r["time_ms"] for side, r in members if side == "int8")
    compute = [r for _, r in members if _role(r) == "compute"]
    # named by the compute node the INT8 row stands for, else the float row's
    lead = next((r for side, r in members if side == "int8" and r in compute), None) or \
        (compute[0] if compute else members[0][1])
    names = list(dict.fromkeys(n for _, r in members for n in _names(r)))
    return {"node": _names(lead)[0], "names": names, "role": "compute" if compute else _role(members[0][1]),
            "float_op": "+".join(r["op_type"] for side, r in members if side == "float") or None,
            "int8_op": "+".join(r["op_type"] for side, r in members if side == "int8") or None,
            "float_ms": float_ms, "int8_ms": int8_ms, "saved_ms": float_ms - int8_ms,
            "order": min(r["order"] for side, r in members if side == members[0][0])}


def latency_saved(float_rows: list[dict[str, Any]], int8_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-node join of two full profiles of one model (see the module docstring): ``{float_ms, int8_ms,
    saved_ms, nodes: [...], quantize: {...}, layout: {...}}``, ``nodes`` in the INT8 graph's execution order
    (float-only entries after), the totals over every row of each profile."""
    tagged = [("int8", r) for r in sorted(int8_rows, key=lambda r: r["order"])] + \
        [("float", r) for r in sorted(float_rows, key=lambda r: r["order"])]
    joined = [t for t in tagged if _role(t[1]) not in OVERHEAD]
    nodes = [_entry([joined[i] for i in group]) for group in _groups(joined)]
    nodes.sort(key=lambda e: (e["int8_op"] is None, e["order"]))
    for entry in nodes:
        del entry["order"]
    record: dict[str, Any] = {"nodes": nodes}
    for role in OVERHEAD:
        float_ms = sum((r["time_ms"] for side, r in tagged if side == "float" and _role(r) == role), 0.0)
        int8_ms = sum((r["time_ms"] for side, r in tagged if side == "int8" and _role(r) == role), 0.0)
        record[role] = {"float_ms": float_ms, "int8_ms": int8_ms, "saved_ms": float_ms - int8_ms,
                        "int8_rows": sum(1 for side, r in tagged if side == "int8" and _role(r) == role)}
    record["float_ms"] = sum(r["time_ms"] for r in float_rows)
    record["int8_ms"] = sum(r["time_ms"] for r in int8_rows)
    record["saved_ms"] = record["float_ms"] - record["int8_ms"]
    return record


def matched_compute(record: dict[str, Any]) -> int:
    """How many compute entries of ``record`` have time on both sides (the join found their float and INT8 rows)."""
    return sum(1 for e in record["nodes"] if e["role"] == "compute" and e["float_op"] and e["int8_op"])


def slower_parts(record: dict[str, Any], top: int = 5) -> list[dict[str, Any]]:
    """What makes the INT8 profile slower: the entries (nodes, and the ``quantize``/``layout`` overheads as entries
    named so) whose INT8 time exceeds their float time, the largest excess first, at most ``top``."""
    parts = [e for e in record["nodes"] if e["saved_ms"] < 0]
    parts += [{"node": role, "names": [role], "role": role, **{k: record[role][k] for k in
                                                               ("float_ms", "int8_ms", "saved_ms")}}
              for role in OVERHEAD if record[role]["saved_ms"] < 0]
    return sorted(parts, key=lambda e: e["saved_ms"])[:top]
