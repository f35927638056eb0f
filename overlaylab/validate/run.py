"""Running every check: the groups side by side, each retried until it converges, then the
diagnosis of what failed (see the package's doc)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from overlaylab.errors import LabError
from overlaylab.validate import catalogue, counters, gone
from overlaylab.validate.checks import (
    check_endpoints,
    check_etcd,
    check_name_rule,
    check_network,
    check_nodes,
)
from overlaylab.validate.facts import OVERLAY_NETWORK_PREFIX, Facts, vnis_of
from overlaylab.validate.isolation import check_isolation, check_placement
from overlaylab.validate.layers import check_sandboxes, check_underlay, check_underlay_over_ssh
from overlaylab.validate.overlay import (
    check_connectivity,
    check_path_mtu,
    failed_pairs_across,
)
from overlaylab.validate.records import Lab, Result, _r

__all__ = ["validate"]

Check = Callable[[Lab], list[Result]]


def per_network(fn: Check) -> Check:
    """A check of one network, run on each network's view of the lab, first first."""

    def each(lab: Lab) -> list[Result]:
        return [r for view in lab.views() for r in fn(view)]

    each.__name__ = fn.__name__
    return each


#: The control plane: each group is retried until it passes or time runs out.
CONTROL: list[tuple[str, Check]] = [
    ("etcd", check_etcd),
    ("nodes", check_nodes),
    ("network", per_network(check_network)),
    ("endpoints", per_network(check_endpoints)),
]
#: The data plane, retried the same way. isolation and placement give records only on a lab of
#: more than one network (placement: a local one).
DATA: list[tuple[str, Check]] = [
    ("underlay", check_underlay),
    ("connectivity", per_network(check_connectivity)),
    ("path-mtu", per_network(check_path_mtu)),
    ("isolation", check_isolation),
    ("placement", check_placement),
]
CONVERGING = CONTROL + DATA
#: Every group a test can need (:mod:`.catalogue`): the converging ones, the name rule's probe,
#: and the two run only after a cross-host probe failed.
GROUPS = (
    *(name for name, _ in CONVERGING), "names-gone", "name-rule", "sandbox", "underlay-ssh",
    "silent",
)  # fmt: skip


def _run_group(lab: Lab, name: str, fn: Check) -> list[Result]:
    try:
        return fn(lab)
    except LabError as e:
        return [_r(f"{name}", "lab", "reachable", str(e), False)]
    except Exception as e:
        return [_r(f"{name}", "lab", "no error", f"{type(e).__name__}: {e}", False)]


def _converge(lab: Lab, name: str, fn: Check, deadline: float, interval: float) -> list[Result]:
    """The group run until every record passes or ``deadline``. A group that passed only on a
    later try says so on stderr, with what failed first: the report keeps the last try's
    records, and a check that passes late is a fact about the lab (and about the up's time)."""
    start, tries, first = time.monotonic(), 0, ""
    while True:
        group = _run_group(lab, name, fn)
        tries += 1
        failed = [r for r in group if not r.ok]
        if failed and not first:
            first = f"{failed[0].check} {failed[0].subject}: {failed[0].actual}"
        if not failed or time.monotonic() >= deadline:
            if not failed and tries > 1:
                print(
                    f"validate: {name} passed on try {tries}, after"
                    f" {time.monotonic() - start:.1f}s; first try: {first}",
                    file=sys.stderr,
                    flush=True,
                )
            return group
        time.sleep(interval)
        lab.refresh()


class _NamesGone:
    """The names that left since the last `up` (:mod:`.gone`), read once etcd answers."""

    def __init__(self) -> None:
        self.gone: gone.Gone | None = None

    def read(self, lab: Lab) -> gone.Gone:
        if self.gone is None:
            self.gone = gone.to_check(gone.read_former(lab), gone.current(lab), lab.in_up)
        return self.gone

    def check(self, lab: Lab) -> list[Result]:
        return gone.check_names_gone(lab, self.read(lab))

    def keep(self, lab: Lab, results: list[Result] | None) -> list[Result]:
        """`up`'s validation keeps the stack's containers for the next one, with the names
        that left and were not proven gone (still there, failed, or not checked: ``results``
        None). Nothing is written when what the last up kept could not be read; a write etcd
        refuses is a failed record (the next run could not see what this one removed)."""
        try:
            pairs = self.read(lab).pairs
        except LabError:
            return []  # etcd failed the run's other checks already; the old record stays
        done = gone.proven(pairs, results) if results is not None else []
        still = [p for p in pairs if p not in done]
        try:
            gone.keep(lab, gone.current(lab), still)
        except LabError as e:
            return [_r(gone.CHECK, f"etcd {gone.KEY}", "kept", f"not kept: {e}", False)]
        return []


def read_for_page(lab: Lab) -> None:
    """The VNIs and the etcd leader into ``lab.facts``, read through the checks' own etcd
    client (a healthy member, the route checked): a GET of the overlay driver's key of the
    network the checks found, a status and a member list. Whatever fails leaves that fact
    unknown: nothing of it is a check, and no exception leaves here."""
    # For the page only: an unknown VNI or leader, never an error or a failed validation.
    with contextlib.suppress(Exception):
        net_id = lab.facts.network_ids.get(str(lab.hosts[0]["name"]))  # as the checks found it
        if net_id:
            node = lab.any_etcd().v2_get(OVERLAY_NETWORK_PREFIX + net_id)
            lab.facts.overlay_vnis(vnis_of(node.value) if node else [])
    with contextlib.suppress(Exception):
        lab.facts.etcd_leader(lab.any_etcd().leader_name())


def validate(
    spec: dict[str, Any],
    timeout: float = 60,
    interval: float = 1.0,
    in_up: bool = False,
    facts: Facts | None = None,
    tests: Collection[str] | None = None,
) -> list[Result]:
    """Every check once converged (or timed out), in a fixed order; see the package doc.

    ``in_up``: run by `up`, where hosts that left the stack still exist (see ``Lab``).
    ``facts``: filled with what the checks saw of the lab (addresses, MTUs), for a picture,
    and with what only the picture shows (the VNIs, the etcd leader: ``read_for_page``).
    ``tests``: the names of the selected tests (:func:`.catalogue.select`); only the groups
    they need run, and only their records are returned. None: every test."""
    groups = catalogue.groups_for(tests)

    def wanted(group: str) -> bool:
        return groups is None or group in groups

    converging = [(name, fn) for name, fn in CONVERGING if wanted(name)]
    lab = Lab(spec, in_up=in_up, facts=facts)
    deadline = time.monotonic() + timeout
    results: list[Result] = []
    try:
        lab.connect_all()
        # the counters that must not move (silent faults), read before every group
        silent = counters.read(lab) if wanted("silent") else None
        # the names that left since the last up: read by the group (retried with it), and
        # kept for the next validation by `up`'s
        names = _NamesGone()
        if wanted("names-gone"):
            converging.append(("names-gone", names.check))
        # The groups only read, so they run side by side, each retried on its own; the report
        # keeps their fixed order. The name rule's probe (a container create and a refused
        # start on another host, the slowest single step) runs beside them: it needs only the
        # endpoint keys, which exist once the containers run, and it never joins the overlay
        # while the rule holds.
        with ThreadPoolExecutor(max_workers=len(CONVERGING) + 1) as pool:
            running = [
                pool.submit(_converge, lab, name, fn, deadline, interval) for name, fn in converging
            ]
            if wanted("name-rule"):
                running.append(pool.submit(_run_group, lab, "name-rule", check_name_rule))
            for group in running:
                results.extend(group.result())
        if silent is not None:
            results.extend(
                _run_group(
                    lab,
                    "silent",
                    lambda lab: counters.compare(lab, silent, counters.read(lab, marks=False)),
                )
            )
        if in_up:
            results.extend(names.keep(lab, results if wanted("names-gone") else None))
        if facts is not None:
            read_for_page(lab)  # the VNIs and the etcd leader, once, for the page alone
        pairs = failed_pairs_across(results)
        if pairs:
            # Only now, and only for the pairs that failed: the sandbox's tables (and, on an
            # ssh stack, the underlay over SSH) say which layer under the overlay broke.
            if wanted("sandbox"):
                results.extend(_run_group(lab, "sandbox", lambda lab: check_sandboxes(lab, pairs)))
            if wanted("underlay-ssh"):
                results.extend(
                    _run_group(lab, "underlay", lambda lab: check_underlay_over_ssh(lab, pairs))
                )
    finally:
        lab.close()
    return catalogue.keep(results, tests)
