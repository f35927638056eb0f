"""The host seam's shape: no import cycle, stdlib-only where real hosts run it, one table."""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from overlaylab import hostops
from overlaylab.hosts.netns import NamespaceHost
from overlaylab.hosts.systemd import SystemdHost

PROJECT_DIR = Path(__file__).resolve().parents[2]
PACKAGE = PROJECT_DIR / "overlaylab"


def _modules() -> dict[str, Path]:
    mods = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = f.relative_to(PROJECT_DIR).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = f
    return mods


def import_graph() -> dict[str, set[str]]:
    """Module -> the overlaylab modules it imports, at module level or inside a function."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, f in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("overlaylab"):
                mod = str(node.module)
                deps.update(
                    f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names
                )
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("overlaylab"))
        graph[name] = deps - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return [*path[path.index(d) :], d]
            if d not in state and (found := visit(d)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_of_the_package_imports_itself_back() -> None:
    graph = import_graph()
    assert "overlaylab.hosts.systemd" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


@pytest.mark.parametrize("module", sorted(_modules()))
def test_every_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    res = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr


def test_the_command_line_loads_only_the_standard_library() -> None:
    """Real hosts run it with their system python3: no docker, pulumi or yaml there."""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import overlaylab.hostops\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(','.join(sorted(new - set(sys.stdlib_module_names))))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_DIR, capture_output=True, text=True, check=True
    )
    assert res.stdout.strip() == "overlaylab"


def test_every_verb_is_either_a_host_verb_or_a_plain_one() -> None:
    sub = next(a for a in hostops.parser()._actions if isinstance(a, argparse._SubParsersAction))
    verbs = set(sub.choices)
    assert verbs == set(hostops.HOST_VERBS) | set(hostops.PLAIN_VERBS)
    assert not set(hostops.HOST_VERBS) & set(hostops.PLAIN_VERBS)


def test_the_placement_flags_choose_the_transport() -> None:
    p = hostops.parser()
    sd = hostops.make_host(p.parse_args(["etcd-down", "--name", "n", "--systemd"]))
    assert isinstance(sd, SystemdHost)
    ns = hostops.make_host(p.parse_args(["etcd-down", "--name", "n", "--host-dir", "/x"]))
    assert isinstance(ns, NamespaceHost) and ns.host_dir == "/x"


def test_a_namespace_verb_without_its_placement_names_the_missing_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["docker-down", "--hostname", "h", "--advertise", "a:1", "--lab-id", "x"]
    assert hostops.main([*argv, "--etcd-endpoint", "http://a:1"]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: docker-down on a local namespace host needs --host-dir, --bridge"
    )
