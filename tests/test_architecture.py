"""The package rules of DESIGN.md, checked on the imports of `src/nimbus` (read with `ast`, nothing imported):
which package may import which, and no modules importing each other in a loop. Imports inside functions
count (they are dependencies too); imports under `if TYPE_CHECKING:` do not (they never run)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "nimbus"
IN_SANDBOX = "nimbus.sandbox.runtime"  # code that runs inside the sandbox, as its own top-level packages

DATABASE = ("nimbus.control.models", "nimbus.control.db", "sqlalchemy", "alembic")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _type_checking(child):
            yield from (name for stmt in child.orelse for name in _imports(stmt, module, is_package))
            continue
        if isinstance(child, ast.Import):
            yield from (alias.name for alias in child.names)
        elif isinstance(child, ast.ImportFrom):
            base = child.module or ""
            if child.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - child.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            # `from nimbus.sandbox import runtimeapi` imports the module nimbus.sandbox.runtimeapi.
            yield from (f"{base}.{alias.name}" for alias in child.names)
        else:
            yield from _imports(child, module, is_package)


def import_graph() -> dict[str, set[str]]:
    """module -> the nimbus modules (and third-party names) it imports."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py") if not _in(module_name(p), IN_SANDBOX)}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        found = set(_imports(ast.parse(path.read_text()), module, path.name == "__init__.py"))
        graph[module] = {name for name in found if name in files or not name.startswith("nimbus")}
    return graph


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def forbidden(graph: dict[str, set[str]]) -> list[tuple[str, str, str]]:
    """(importer, imported, rule) for every import the rules forbid."""
    out: list[tuple[str, str, str]] = []
    for module, names in sorted(graph.items()):
        for name in sorted(names):
            if _in(module, "nimbus.control") and any(
                _in(name, p) for p in ("nimbus.sandbox", "nimbus.invoke", "nimbus.api")
            ):
                out.append((module, name, "control/ imports no sandbox/, invoke/, api/"))
            if _in(module, "nimbus.sandbox") and (
                any(_in(name, p) for p in ("nimbus.api", "nimbus.invoke", "nimbus.observe"))
                or any(_in(name, d) for d in DATABASE)
            ):
                out.append((module, name, "sandbox/ imports no api/, invoke/, observe/ or the database"))
            if _in(module, "nimbus.observe") and _in(name, "nimbus.sandbox") and name != "nimbus.sandbox.types":
                out.append((module, name, "observe/ imports only typed records from sandbox/ (sandbox/types.py)"))
            if _in(module, "nimbus.api") and _in(name, "nimbus.sandbox"):
                out.append((module, name, "api/ imports no sandbox/"))
            if _in(module, "nimbus.project") and _in(name, "nimbus") and not _in(name, "nimbus.project"):
                out.append((module, name, "project/ (client side) imports only its own package"))
            if _in(module, "nimbus.cli") and _in(name, "nimbus") and not any(
                _in(name, allowed) for allowed in (
                    "nimbus.cli", "nimbus.config", "nimbus.sigv4", "nimbus.awscreds",
                    "nimbus.project",  # project files (serverless.yml, SAM): client-side parsing and planning
                    "nimbus.server",  # `nimbus server` runs the server in this process
                )
            ) and name != "nimbus":
                out.append((module, name, "cli/ imports its own package, settings and the AWS wire helpers only"))
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_the_graph_sees_the_package() -> None:
    graph = import_graph()
    assert "nimbus.platform" in graph and "nimbus.invoke.service" in graph["nimbus.platform"]
    assert "nimbus.sandbox.types" in graph["nimbus.invoke.service"]
    # A planted violation and loop are found (the checks can fail).
    planted = {**graph, "nimbus.control.x": {"nimbus.sandbox.manager"}, "nimbus.a": {"nimbus.b"},
               "nimbus.b": {"nimbus.a"}}
    assert ("nimbus.control.x", "nimbus.sandbox.manager", "control/ imports no sandbox/, invoke/, api/") in (
        forbidden(planted))
    assert ["nimbus.a", "nimbus.b"] in cycles(planted)


def test_packages_import_only_what_design_allows() -> None:
    assert forbidden(import_graph()) == []


def test_no_modules_import_each_other_in_a_loop() -> None:
    assert cycles(import_graph()) == []
