"""vitlib's modules form layers: no import circle, counting imports inside functions.

    .venv/bin/python -m pytest tests/test_layering.py -q      (prints nothing when it holds)
"""
from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

VITLIB = Path(__file__).resolve().parent.parent / "vitlib"


def import_graph() -> dict[str, set[str]]:
    """module -> the vitlib modules it imports anywhere in its source (top level or in a function)."""
    graph = {}
    for path in sorted(VITLIB.glob("*.py")):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vitlib":
                parts = node.module.split(".")
                deps |= {a.name for a in node.names} if len(parts) == 1 else {parts[1]}
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith("vitlib.")}
        graph[path.stem] = deps - {path.stem}
    return graph


def test_the_import_graph_has_no_circle():
    graph = import_graph()
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as e:
        raise AssertionError(f"import circle: {' -> '.join(e.args[1])}") from None
    assert set(order) >= set(graph)


def test_the_layers_run_upwards():
    graph = import_graph()
    # the lowest layer imports nothing of vitlib but paths; the hub and the CLIs sit on top
    assert graph["paths"] == set() and graph["budget"] <= {"config"} and graph["model"] <= {"paths"}
    assert "train" in graph["hub"] and "hub" not in graph["train"] | graph["checkpoint"]
    assert "imdb" not in graph["data"]


def test_a_circle_is_caught(tmp_path, monkeypatch):
    """The check itself can fail: two modules importing each other, one inside a function."""
    (tmp_path / "a.py").write_text("from vitlib.b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from vitlib import a\n")
    monkeypatch.setattr(__import__(__name__), "VITLIB", tmp_path)
    graph = import_graph()
    assert graph == {"a": {"b"}, "b": {"a"}}
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError:
        return
    raise AssertionError("the circle a <-> b was not found")


def test_every_function_reads_at_a_glance():
    """No function or method in vitlib is longer than 60 lines (nanoGPT's bar for a readable file)."""
    long = []
    for path in sorted(VITLIB.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 60:
                    long.append(f"{path.stem}.{node.name}: {n} lines")
    assert not long, long
