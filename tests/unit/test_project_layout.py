"""The whole project's imports: no cycle between its modules (the program, components, the
package, the stand-in, the bench, the tests), and nothing outside ``tests`` imports ``tests``."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.unit.test_hosts_layout import _cycle

PROJECT_DIR = Path(__file__).resolve().parents[2]
PACKAGES = ("overlaylab", "components", "standin", "bench", "tests")


def _modules() -> dict[str, Path]:
    mods = {"__main__": PROJECT_DIR / "__main__.py"}
    for pkg in PACKAGES:
        for f in sorted((PROJECT_DIR / pkg).rglob("*.py")):
            parts = f.relative_to(PROJECT_DIR).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def project_imports() -> dict[str, set[str]]:
    """Module -> the project's modules it imports (at module level or in a function)."""
    mods = _modules()

    def ours(name: str) -> bool:
        return name.split(".")[0] in PACKAGES

    graph: dict[str, set[str]] = {}
    for name, f in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and ours(node.module or ""):
                mod = str(node.module)
                deps.update(
                    f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names
                )
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if ours(a.name))
        graph[name] = deps - {name}
    return graph


def test_no_module_of_the_project_imports_itself_back() -> None:
    graph = project_imports()
    assert {"__main__", "components.etcd_cluster", "standin.engine"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_nothing_outside_the_tests_imports_them() -> None:
    graph = project_imports()
    bad = {
        m: sorted(d for d in deps if d.split(".")[0] == "tests")
        for m, deps in graph.items()
        if m.split(".")[0] != "tests"
    }
    assert {m: d for m, d in bad.items() if d} == {}
