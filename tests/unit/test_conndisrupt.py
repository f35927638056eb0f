"""conn-disrupt's verdicts from what the containers hold, through a fake daemon; the lab test
(tests/lab/test_grow_shrink_lab.py) runs the real connections and a real reset."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from overlaylab.validate import conndisrupt
from overlaylab.validate.conndisrupt import Pair, check_connections, pairs_across
from overlaylab.validate.records import ContainerInfo

CONTAINERS = [
    {"name": "test1", "host": "h1"},
    {"name": "test2", "host": "h2"},
    {"name": "test3", "host": "h1"},
]


def test_pairs_are_across_hosts_both_ways_and_only_among_the_staying() -> None:
    got = {(p.client, p.server) for p in pairs_across(CONTAINERS)}
    assert got == {("test1", "test2"), ("test2", "test1"), ("test3", "test2"), ("test2", "test3")}
    staying = {(p.client, p.server) for p in pairs_across(CONTAINERS, {"test1", "test2"})}
    assert staying == {("test1", "test2"), ("test2", "test1")}


@dataclass
class Exec:
    output: bytes
    exit_code: int = 0


@dataclass
class FakeContainer:
    # What `cat out; echo ---; cat err` gives, one answer per call (the last one repeats).
    answers: list[str]
    calls: list[str] = field(default_factory=list)

    def exec_run(self, argv: list[str], detach: bool = False) -> Exec:
        self.calls.append(argv[-1])
        text = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return Exec(text.encode())


class FakeLab:
    def __init__(self, answers: list[str]) -> None:
        self.containers = CONTAINERS
        self.network = {"name": "demo"}
        self.client = FakeContainer(answers)

    def refresh(self) -> None:
        pass

    def container_infos(self) -> dict[str, ContainerInfo]:
        return {"test2": ContainerInfo("test2", "h2", "10.0.0.3")}

    def docker(self, host: str) -> Any:
        lab = self

        class Containers:
            def get(self, name: str) -> FakeContainer:
                return lab.client

        class Client:
            containers = Containers()

        return Client()


def lines(n: int, tail: str = "") -> str:
    return "".join(f"{i}\n" for i in range(1, n + 1)) + tail


def verdict(before: str, after: str) -> tuple[bool, str]:
    lab = FakeLab([before, after])
    (r,) = check_connections(lab, [Pair("test1", "test2")], window=0)  # type: ignore[arg-type]
    assert r.check == conndisrupt.CHECK
    assert r.subject == "test1 -> test2 (10.0.0.3:7070)"
    return r.ok, r.actual


def test_a_connection_that_grew_without_a_gap_is_open() -> None:
    ok, actual = verdict(lines(5) + "---\n", lines(9) + "1" + "---\n")  # "1" of "10", cut
    assert ok, actual
    assert actual == "open, 9 lines echoed, 4 in the last 0 s"


def test_a_connection_whose_nc_exited_is_closed() -> None:
    ok, actual = verdict(lines(5) + "---\n", lines(7) + "---\nnc exited 1\n")
    assert not ok
    assert actual.startswith("closed after 7 lines (nc exited 1"), actual


def test_a_connection_that_stopped_growing_is_stalled() -> None:
    ok, actual = verdict(lines(5) + "---\n", lines(5) + "---\n")
    assert not ok
    assert actual == "stalled: 5 lines echoed, none more in 0 s"


def test_a_gap_in_the_echoed_numbers_is_not_one_connection() -> None:
    ok, actual = verdict(lines(5) + "---\n", "1\n2\n4\n5\n6\n---\n")
    assert not ok
    assert "gap" in actual, actual
