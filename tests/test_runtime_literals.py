"""No runtime name as a string literal outside its own package (``edgekd/runtimes/<name>/``): the rest of edgekd
reaches a runtime through the capability table (:mod:`edgekd.runtimes`). Read from the source with :mod:`ast`, so
comments and docstrings do not count; an f-string's text around a name does not either (only a literal that *is*
a runtime name, as a dispatch key, a comparison or a tuple entry would use it)."""

from __future__ import annotations

import ast

from tests.conftest import ROOT

NAMES = frozenset({"tensorrt", "openvino", "onnxruntime", "litert"})


def runtime_literals(source: str) -> list[tuple[int, str]]:
    """``(line, name)`` of every string constant equal to a runtime name, docstrings left out."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return sorted((node.lineno, node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES
                  and id(node) not in docstrings)


def test_the_scanner_finds_literals_and_skips_comments_and_docstrings() -> None:
    source = ('"""openvino"""\n# "tensorrt"\ndef f():\n    """onnxruntime"""\n    return "litert", f"{1} openvino"\n'
              'X = {"openvino": 1}\n')
    assert runtime_literals(source) == [(5, "litert"), (6, "openvino")]


def test_no_runtime_name_outside_its_package() -> None:
    found = []
    for path in sorted((ROOT / "edgekd").rglob("*.py")):
        parts = path.relative_to(ROOT / "edgekd").parts
        for line, name in runtime_literals(path.read_text()):
            if len(parts) > 2 and parts[0] == "runtimes" and parts[1] == name:
                continue  # a runtime names itself in its own package
            found.append(f"{path.relative_to(ROOT).as_posix()}:{line}: {name!r}")
    assert not found, "runtime names outside their package (reach it through the capability table):\n" + \
        "\n".join(found)
