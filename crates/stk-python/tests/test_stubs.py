"""The type stubs (stk/_stk.pyi) name exactly what the native module has: every class, function,
method and property, no more and no fewer, so that a type checker sees the real surface."""

from __future__ import annotations

import ast
from pathlib import Path

import stk._stk as native

STUBS = Path(__file__).resolve().parents[1] / "python" / "stk" / "_stk.pyi"


def stub_names() -> tuple[set[str], dict[str, set[str]]]:
    """Top-level names of the stub file and, per class, the names it defines."""
    tree = ast.parse(STUBS.read_text())
    top, classes = set(), {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            top.add(node.name)
            classes[node.name] = {
                n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            }
        elif isinstance(node, ast.FunctionDef):
            top.add(node.name)
    return top, classes


def runtime_names(obj) -> set[str]:
    return {n for n in dir(obj) if not (n.startswith("__") and n.endswith("__"))}


def test_stubs_name_every_function_class_and_method():
    top, classes = stub_names()
    assert top == runtime_names(native), f"module: stubs {sorted(top)} vs {sorted(runtime_names(native))}"
    for name, methods in classes.items():
        runtime = runtime_names(getattr(native, name))
        # Dunder methods a stub spells out (__init__, __reduce__) must exist too.
        dunders = {m for m in methods if m.startswith("__")}
        assert methods - dunders == runtime, f"{name}: stubs {sorted(methods - dunders)} vs {sorted(runtime)}"
        missing = {m for m in dunders if not hasattr(getattr(native, name), m)}
        assert not missing, f"{name}: stubbed but absent: {sorted(missing)}"
