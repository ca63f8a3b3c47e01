"""The shape of slack_app/ (issue 15, item 3): no import cycles inside it, listeners that only hand on, and
policy left to agent/. Read from the source (every import, also those inside functions), so a change that
breaks the shape fails here with the offending modules named."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "slack_app"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from slack_app import blocks`
    return found


def internal_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def test_no_import_cycles_inside_slack_app():
    graph = internal_graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_listeners_only_build_jobs():
    graph = internal_graph()
    for listener in ("slack_app.listeners.events", "slack_app.listeners.actions", "slack_app.listeners.commands",
                     "slack_app.listeners.shortcuts"):
        assert graph[listener] <= {"slack_app.jobs", "slack_app.blocks", "slack_app"}, (listener, graph[listener])
        outside = {m for m in imports_of(PACKAGE / "listeners" / f"{listener.rsplit('.', 1)[1]}.py")
                   if m.startswith("agent")}
        assert not outside, f"{listener} reaches into agent/: {outside}"

