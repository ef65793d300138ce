"""No import cycle among edgekd's modules, counting the imports inside functions too (a lazy import is still a
dependency): the module graph is read from the source with :mod:`ast` and its strongly connected components must all
be single modules."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.conftest import ROOT


def module_graph(package: Path) -> dict[str, set[str]]:
    """Module → the edgekd modules it imports (``from a import b`` counts ``a``, and ``a.b`` where that is a module)."""
    modules = {}
    for path in package.rglob("*.py"):
        name = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in list(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_edgekd_has_no_import_cycle() -> None:
    assert cycles(module_graph(ROOT / "edgekd")) == []


def test_runtime_packages_stay_below_the_stages_and_apart() -> None:
    """A runtime package (``edgekd/runtimes/<name>/``) imports foundations and the algorithm layer only, never the
    orchestration (stages, pipeline, cli), bench/deploy/report, nor another runtime's package."""
    higher = ("edgekd.stages", "edgekd.pipeline", "edgekd.cli", "edgekd.bench", "edgekd.deploy", "edgekd.report")
    graph = module_graph(ROOT / "edgekd")
    offenders = []
    for module, targets in graph.items():
        parts = module.split(".")
        if len(parts) < 3 or parts[1] != "runtimes" or parts[2].startswith("_"):
            continue
        own = ".".join(parts[:3])
        for target in targets:
            other_runtime = target.startswith("edgekd.runtimes.") and not target.startswith(own) \
                and not target.split(".")[2].startswith("_")
            if target.startswith(higher) or other_runtime:
                offenders.append(f"{module} imports {target}")
    assert not offenders, "\n".join(offenders)


def test_no_stage_imports_another_stage() -> None:
    """Stages talk through the run directory only (DESIGN.md): a stage module imports shared stage helpers
    (``edgekd/stages/_*.py``) but never another stage's module."""
    graph = module_graph(ROOT / "edgekd")

    def is_stage(module: str) -> bool:
        parts = module.split(".")
        return len(parts) == 3 and parts[1] == "stages" and not parts[2].startswith("_")

    offenders = [f"{m} imports {t}" for m, targets in graph.items() if is_stage(m) for t in targets if is_stage(t)]
    assert not offenders, "\n".join(offenders)
