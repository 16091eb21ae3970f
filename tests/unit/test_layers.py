"""The runtime's core below, the lab layer (and the class host's) above: no core module imports those, and the
core's imports (lazy ones too) have no cycle."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "minicontainer"


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Module -> the minicontainer modules it imports anywhere in its body."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name, found = module_name(path), set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + [base]).strip(".")
                for alias in node.names:
                    found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        graph[name] = {m for m in found if m in MODULES and m != name}
    return graph


MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}


ABOVE_THE_CORE = ("minicontainer.lab", "minicontainer.classroom")  # the lab layer, and the class host's above it


def is_lab(module: str) -> bool:
    return any(module == top or module.startswith(top + ".") for top in ABOVE_THE_CORE)


def test_the_core_never_imports_the_lab_layer():
    offenders = {m: sorted(filter(is_lab, deps)) for m, deps in imports().items() if not is_lab(m)}
    assert {m: d for m, d in offenders.items() if d} == {}


def test_the_core_has_no_import_cycle():
    graph = {m: {d for d in deps if not is_lab(d)} for m, deps in imports().items() if not is_lab(m)}
    done, path = set(), []

    def visit(module):
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        path.append(module)
        for dep in sorted(graph.get(module, ())):
            visit(dep)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_the_lab_layer_holds_the_teaching_parts():
    for module in ("widgets", "attacks", "payloads", "exercises", "solutions", "compare", "network_steps",
                   "layers"):
        assert f"minicontainer.lab.{module}" in MODULES
        assert f"minicontainer.{module}" not in MODULES
