"""Shared fixtures: the seed's stack config, and the program's graph recorded under mocks."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from overlaylab.stackconfig import raw_from_file
from standin import Record, Run, run_program


@dataclass
class Graph:
    """The resources one run of the program registered, with small queries over them."""

    run: Run

    @property
    def records(self) -> list[Record]:
        return self.run.engine.records

    @property
    def resources(self) -> list[Record]:
        return [r for r in self.records if r.custom]

    def named(self, name: str) -> Record:
        found = [r for r in self.records if r.name == name]
        assert len(found) == 1, f"expected one resource named {name}, found {len(found)}"
        return found[0]

    def of_type(self, typ: str) -> list[Record]:
        return [r for r in self.resources if r.type == typ]

    def upstream(self, rec: Record) -> set[str]:
        """URNs this resource waits for, directly or through others."""
        by_urn = {r.urn: r for r in self.records}
        seen: set[str] = set()
        todo = list(rec.deps) + ([rec.provider.rsplit("::", 1)[0]] if rec.provider else [])
        while todo:
            u = todo.pop()
            if u in seen or u not in by_urn:
                continue
            seen.add(u)
            r = by_urn[u]
            todo.extend(r.deps)
            if r.provider:
                todo.append(r.provider.rsplit("::", 1)[0])
        return seen

    def waits_for(self, later: str, earlier: str) -> bool:
        return self.named(earlier).urn in self.upstream(self.named(later))


@pytest.fixture
def seed_config() -> dict[str, Any]:
    """The local stack's config, as written in stacks/Pulumi.local.yaml (a copy per test)."""
    return copy.deepcopy(raw_from_file("local"))


@pytest.fixture
def record_graph() -> Iterator[Any]:
    """Run the program under mocks without touching the machine; returns its Graph."""

    def go(
        raw: dict[str, Any], preview: bool = False, secrets: dict[str, str] | None = None
    ) -> Graph:
        return Graph(run_program(raw, preview=preview, perform=False, secrets=secrets))

    yield go
