"""The validator as a catalogue of named tests, after ``cilium connectivity test``.

Every record (:class:`Result`) belongs to a named test: by its check name (and, for the pings,
by its subject), or, for a group's own error record (``check`` = the group's name, subject
``lab``), to every test that needs that group. A test needs one or more of the groups
:func:`overlaylab.validate.run.validate` runs; selecting tests (:func:`select`: ``--test REGEX``,
``!REGEX`` to exclude) decides which groups run, and only the selected tests' records are
reported. After the run each test is passed, failed, or skipped with its reason (not selected,
no namespace probes on this transport, too few hosts or containers, nothing triggered it):
never silently absent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar


class Result(Protocol):
    """A validator's record (:class:`overlaylab.validate.records.Result`), as the catalogue
    reads it: not imported from there, as the config (which checks ``validation.tests``
    here) is imported by the records' module."""

    @property
    def check(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def expected(self) -> str: ...
    @property
    def actual(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    def line(self) -> str: ...


Spec = dict[str, Any]
#: Why a test cannot run on a spec, or None.
Need = Callable[[Spec], str | None]
_WORDS = {1: "a", 2: "two", 3: "three"}


def _hosts(n: int) -> Need:
    def need(spec: Spec) -> str | None:
        return f"needs {_WORDS.get(n, n)} hosts" if len(spec.get("hosts") or []) < n else None

    return need


def _containers(n: int) -> Need:
    def need(spec: Spec) -> str | None:
        return (
            f"needs {_WORDS.get(n, n)} containers"
            if len(spec.get("containers") or []) < n
            else None
        )

    return need


def _containers_on_two_hosts(spec: Spec) -> str | None:
    on = {c.get("host") for c in spec.get("containers") or []}
    return None if len(on) >= 2 else "needs containers on two hosts"


def _networks(n: int) -> Need:
    def need(spec: Spec) -> str | None:
        nets = spec.get("networks") or ([spec["network"]] if spec.get("network") else [])
        return f"needs {_WORDS.get(n, n)} networks" if len(nets) < n else None

    return need


def _one_container(spec: Spec) -> str | None:
    return None if spec.get("containers") else "needs a container"


@dataclass(frozen=True)
class Test:
    name: str
    description: str
    #: the groups of checks it needs (names in :data:`overlaylab.validate.run.GROUPS`)
    groups: tuple[str, ...]
    #: the ``Result.check`` names that belong to it
    checks: tuple[str, ...]
    #: with it, only the records whose subject contains a match belong to it
    subject: str | None = None
    #: it probes from inside the hosts' namespaces: local labs only, as root
    probes: bool = False
    #: what the spec must have for it to run (the first reason that holds is the skip's)
    needs: tuple[Need, ...] = ()
    #: why it may have no records even when it can run (the last skip reason)
    absent: str = "ran no checks"

    @property
    def transports(self) -> tuple[str, ...]:
        return ("local",) if self.probes else ("local", "ssh")

    def owns(self, r: Result) -> bool:
        if r.subject == "lab" and r.check in self.groups:
            return True  # the group's own error: it could not run at all
        if r.check not in self.checks:
            return False
        return self.subject is None or re.search(self.subject, r.subject) is not None


_TWO_HOSTS = (_hosts(2),)

CATALOGUE: tuple[Test, ...] = (
    Test(
        "etcd-members",
        "every etcd member is healthy and lists exactly the stack's hosts",
        ("etcd",),
        ("etcd.member-healthy", "etcd.member-list"),
    ),
    Test(
        "etcd-nodes",
        "/docker/nodes holds exactly each host's advertise address",
        ("nodes",),
        ("etcd.node-registered", "etcd.nodes-exact"),
    ),
    Test(
        "docker-network",
        "every daemon lists the overlay with one id, driver overlay, scope global",
        ("network",),
        ("docker.network-exists", "docker.network-id", "docker.network-global"),
    ),
    Test(
        "docker-keys",
        "Docker's keys in etcd: the network's, one endpoint per container (IP, MAC, locator)",
        ("network", "endpoints"),
        (
            "etcd.network-key",
            "etcd.network-name",
            "etcd.network-type",
            "etcd.network-subnet",
            "etcd.network-gateway",
            "etcd.endpoint",
            "etcd.endpoint-key",
            "etcd.endpoint-locator",
            "etcd.endpoint-ip",
            "etcd.endpoint-mac",
        ),
    ),
    Test(
        "containers-running",
        "each container runs and is attached to the overlay",
        ("endpoints",),
        ("docker.container-running",),
    ),
    Test(
        "underlay-ping",
        "every host's underlay answers ICMP from every other host",
        ("underlay", "underlay-ssh"),
        ("underlay.ping",),
        probes=True,
        needs=_TWO_HOSTS,
    ),
    Test(
        "underlay-vxlan",
        "UDP 4789 sent from every host is delivered on every other",
        ("underlay",),
        ("underlay.vxlan",),
        probes=True,
        needs=_TWO_HOSTS,
    ),
    Test(
        "underlay-serf",
        "serf's UDP 7946 is delivered and TCP 7946 accepts between every two hosts",
        ("underlay",),
        ("underlay.serf-udp", "underlay.serf-tcp"),
        probes=True,
        needs=_TWO_HOSTS,
    ),
    Test(
        "underlay-mtu",
        "each host's eth0 carries the overlay MTU plus VXLAN's 50 bytes",
        ("underlay",),
        ("underlay.mtu",),
        probes=True,
        needs=_TWO_HOSTS,
    ),
    Test(
        "overlay-ping-by-address",
        "every container pings every other by its overlay address",
        ("connectivity",),
        ("overlay.ping",),
        subject=" by IP ",
        needs=(_containers(2),),
    ),
    Test(
        "overlay-ping-by-name",
        "every container pings every other by name (Docker's embedded DNS)",
        ("connectivity",),
        ("overlay.ping",),
        subject=" by name ",
        needs=(_containers(2),),
    ),
    Test(
        "path-mtu",
        "a full-size don't-fragment ping between every two containers across hosts",
        ("path-mtu",),
        ("overlay.path-mtu",),
        needs=(_containers_on_two_hosts,),
    ),
    Test(
        "overlay-mtu",
        "each container's interface on each network has the MTU the configuration gives",
        ("path-mtu",),
        ("overlay.mtu",),
        needs=(_one_container,),
    ),
    Test(
        "overlay-sandbox",
        "after a failed cross-host probe: the sandbox knows the target's MAC and IP",
        ("sandbox",),
        ("overlay.sandbox-fdb", "overlay.sandbox-neigh"),
        probes=True,
        needs=_TWO_HOSTS,
        absent="runs only when a selected cross-host ping or path-MTU probe fails",
    ),
    Test(
        "name-unique",
        "a container's name taken again on another host is refused and leaves nothing",
        ("name-rule",),
        ("overlay.name-unique", "overlay.name-probe-clean"),
        needs=(_hosts(2), _one_container),
    ),
    Test(
        "name-gone",
        "a name that left the stack or a network since the last up resolves nowhere on it",
        ("names-gone",),
        ("overlay.name-gone",),
        needs=(_one_container,),
        absent="no container left the stack or a network since the last up",
    ),
    Test(
        "isolation",
        "containers that share no network cannot reach each other",
        ("isolation",),
        ("overlay.isolation",),
        needs=(_networks(2),),
        absent="needs two containers that share no network",
    ),
    Test(
        "silent-faults",
        "counters that must not move during the run: VXLAN and UDP receive errors fail; "
        "VXLAN drops and dockerd error lines are reported",
        ("silent",),
        ("silent.vxlan-errors", "silent.udp-errors", "silent.dockerd-errors"),
    ),
    Test(
        "placement",
        "a host has a network's overlay sandbox iff one of its containers is on that network",
        ("placement",),
        ("overlay.placement",),
        probes=True,
    ),
)

BY_NAME = {t.name: t for t in CATALOGUE}
#: The pseudo-test of records no test claims (a check added without its test): reported, so
#: that a failed check always fails a test.
UNCATALOGUED = "uncatalogued"
NOT_SELECTED = "not selected (--test)"


class SelectionError(ValueError):
    """A ``--test`` pattern that is not a regular expression, or matches no test."""


def select(patterns: Iterable[str]) -> frozenset[str]:
    """cilium's ``--test``: the tests matching any include (all when there is none), minus
    those matching any exclude (``!REGEX``); a pattern is searched in the name."""
    includes: list[re.Pattern[str]] = []
    excludes: list[re.Pattern[str]] = []
    for p in patterns:
        body = p[1:] if p.startswith("!") else p
        try:
            rx = re.compile(body)
        except re.error as e:
            raise SelectionError(f"--test {p!r} is not a regular expression: {e}") from None
        if not any(rx.search(t.name) for t in CATALOGUE):
            raise SelectionError(f"--test {p!r} matches no test: see --list for the tests' names")
        (excludes if p.startswith("!") else includes).append(rx)
    return frozenset(
        t.name
        for t in CATALOGUE
        if (not includes or any(rx.search(t.name) for rx in includes))
        and not any(rx.search(t.name) for rx in excludes)
    )


def groups_for(selected: Collection[str] | None) -> frozenset[str] | None:
    """The groups the selected tests need; None (every group) without a selection."""
    if selected is None:
        return None
    return frozenset(g for t in CATALOGUE if t.name in selected for g in t.groups)


def owners(r: Result) -> list[Test]:
    return [t for t in CATALOGUE if t.owns(r)]


R = TypeVar("R", bound=Result)


def keep(results: Iterable[R], selected: Collection[str] | None) -> list[R]:
    """The records of the selected tests (all without a selection)."""
    if selected is None:
        return list(results)
    return [r for r in results if any(t.name in selected for t in owners(r))]


def probe_reason(spec: Spec, can_enter: bool | None = None) -> str | None:
    """Why no namespace probe can run for ``spec`` here (as ``Lab.local`` decides), or None.
    ``can_enter`` None: ask :func:`overlaylab.validate.probes.can_enter`."""
    lab = spec.get("lab") or {}
    hosts = spec.get("hosts") or []
    if lab.get("transport", "local") != "local" or not all(
        str(h.get("dockerHost", "")).startswith("unix://") for h in hosts
    ):
        return "an SSH stack has no namespace probes"
    if can_enter is None:
        from overlaylab.validate import probes

        can_enter = probes.can_enter()
    if not can_enter:
        return "no namespace probes here: they need root on the machine that holds the hosts"
    return None


def cannot_run(test: Test, spec: Spec, probes: str | None) -> str | None:
    """Why ``test`` cannot run on ``spec`` (``probes``: :func:`probe_reason`), or None."""
    if test.probes and probes:
        return probes
    for need in test.needs:
        why = need(spec)
        if why:
            return why
    return None


@dataclass(frozen=True)
class Outcome:
    """One test after a run: ``passed``, ``failed`` or ``skipped`` (with its reason)."""

    test: str
    description: str
    status: str
    results: tuple[Result, ...] = ()
    reason: str = ""
    #: a skipped test's check names, each a skipped check
    skipped_checks: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> int:
        return sum(not r.ok for r in self.results)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.test,
            "description": self.description,
            "status": self.status,
            "checks": len(self.results),
            "failed": self.failed,
            **({"reason": self.reason, "skippedChecks": list(self.skipped_checks)}
               if self.status == "skipped" else {}),
        }  # fmt: skip


def outcomes(
    spec: Spec,
    results: Iterable[Result],
    selected: Collection[str] | None = None,
    probes: str | None = None,
) -> list[Outcome]:
    """Every test of the catalogue, in its order, as the run left it; records no test claims
    make one more, ``uncatalogued``."""
    results = list(results)
    out: list[Outcome] = []
    for t in CATALOGUE:
        mine = tuple(r for r in results if t.owns(r))
        if selected is not None and t.name not in selected:
            out.append(Outcome(t.name, t.description, "skipped", (), NOT_SELECTED, t.checks))
        elif mine:
            status = "failed" if any(not r.ok for r in mine) else "passed"
            out.append(Outcome(t.name, t.description, status, mine))
        else:
            why = cannot_run(t, spec, probes) or t.absent
            out.append(Outcome(t.name, t.description, "skipped", (), why, t.checks))
    stray = tuple(r for r in results if not owners(r))
    if stray:
        status = "failed" if any(not r.ok for r in stray) else "passed"
        out.append(Outcome(UNCATALOGUED, "checks that belong to no test", status, stray))
    return out


def counts(tests: Sequence[Outcome], results: Sequence[Result]) -> dict[str, int]:
    """Tests and checks: passed, failed, skipped (a skipped test's check names are its
    skipped checks)."""
    return {
        "tests": sum(o.status != "skipped" for o in tests),
        "testsPassed": sum(o.status == "passed" for o in tests),
        "testsFailed": sum(o.status == "failed" for o in tests),
        "testsSkipped": sum(o.status == "skipped" for o in tests),
        "checks": len(results),
        "checksPassed": sum(r.ok for r in results),
        "checksFailed": sum(not r.ok for r in results),
        "checksSkipped": sum(len(o.skipped_checks) for o in tests),
    }


def listing(spec: Spec | None = None) -> list[str]:
    """``--list``: one line per test, name, transports and description; with a spec, whether it runs
    on that spec's transport and hosts (and why not; who may probe namespaces is decided at
    the run)."""
    width = max(len(t.name) for t in CATALOGUE)
    probes = probe_reason(spec, can_enter=True) if spec is not None else None
    lines = []
    for t in CATALOGUE:
        line = f"{t.name:<{width}}  {'/'.join(t.transports):<9}  {t.description}"
        if spec is not None:
            why = cannot_run(t, spec, probes)
            line += f"  [skipped here: {why}]" if why else "  [runs here]"
        lines.append(line)
    return lines
