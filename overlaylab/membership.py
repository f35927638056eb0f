"""etcd runtime reconfiguration: how a member founds, joins or leaves the cluster.

A member's resource must not change when other hosts come or go (its inputs may not depend on
the list of hosts), so a member decides at start, not in the program, how it becomes part of
the cluster:

- no member it knows of answers healthy: the cluster is being founded; start with
  ``--initial-cluster-state new`` and the founding membership (static bootstrap, as the seed);
- a healthy member answers: the cluster runs. If this member is not in its member list it is
  added (``member add``) first; then it starts with ``--initial-cluster-state existing`` and the
  membership of that moment. A member listed but never started (a slow founder) does the same.

The founding membership is what the program knew when the member was created; etcd reads
``--initial-cluster`` only to bootstrap an empty data dir and never again, which is why the
program tells the engine to ignore later changes of it.

Leaving: the member removes itself (``member remove``) while it still runs, so the remaining
members shrink their quorum before it stops; a member that is alone, or a cluster without a
quorum (the whole stack being destroyed), is simply stopped.

Standard library only: this runs on real hosts with their system python3.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from overlaylab.errors import EtcdError, EtcdRefused
from overlaylab.etcd import EtcdClient, etcd_url

ClientFor = Callable[[str], EtcdClient]  # client URL -> client (route guard, TLS, timeout)

#: What makes a cluster this one: a change of any of them is a new, empty cluster.
IDENTITY_KEYS = {
    "token": "etcd.clusterToken",
    "clientPort": "etcd.clientPort",
    "peerPort": "etcd.peerPort",
}


#: How long a member whose data is lost waits for another to answer healthy before it refuses:
#: a few elections (the lab's election timeout is at most 1 s).
LOST_PATIENCE = 15.0


@dataclass(frozen=True)
class Bootstrap:
    state: str  # "new" or "existing"
    initial_cluster: str
    how: str  # one line for the log: founded, joined, ...
    added_via: str = ""  # the running member that added this one (``member add``), if any


def parse_cluster(text: str) -> list[tuple[str, str]]:
    """``name=url,name=url`` -> [(name, url)]; also accepts a JSON list of such pairs."""
    text = text.strip()
    if text.startswith("["):
        return [(str(n), str(u)) for n, u in json.loads(text)]
    pairs = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise EtcdError(f"initial cluster entry {item!r} is not name=peer-url")
        pairs.append((name, url))
    return pairs


def client_url(peer_url: str, client_port: int) -> str:
    """A member's client URL from its peer URL: same scheme and address, the client port."""
    u = urllib.parse.urlsplit(peer_url)
    return etcd_url(str(u.hostname), client_port, u.scheme == "https")


def find_running(
    founding: list[tuple[str, str]], me: str, client_port: int, client_for: ClientFor
) -> EtcdClient | None:
    """Another member that answers healthy, or None (the cluster is being founded).

    Every other founder is asked at once: one that has started but has no quorum yet accepts
    the connection and answers nothing until it is ready (etcd 3.4 ``embed/serve.go``,
    ``serve`` waits on ``ReadyNotify``), so each probe of it lasts the client's whole timeout.
    Asked in turn, k such founders cost a starting member k timeouts; at once, one. And a
    founder whose peer port says the cluster is not decided yet (no leader ever: it is being
    founded) is not asked on its client port at all: in an 8-host up, the one timeout was
    1.5 s of each member's 3.5 s."""

    def probe(name_peer: tuple[str, str]) -> EtcdClient | None:
        try:
            # Its peer port answers at once: a cluster not decided yet is being founded.
            if client_for(name_peer[1]).cluster_version() == "not_decided":
                return None
        except EtcdError:
            pass  # refused (not started) or unknown: its client port says
        client = client_for(client_url(name_peer[1], client_port))
        try:
            return client if client.health() else None
        except EtcdError:
            return None

    from concurrent.futures import ThreadPoolExecutor, as_completed

    others = [(n, peer) for n, peer in founding if n != me]
    if not others:
        return None
    pool = ThreadPoolExecutor(max_workers=len(others))
    try:
        for done in as_completed([pool.submit(probe, o) for o in others]):
            if (client := done.result()) is not None:
                return client
        return None
    finally:
        pool.shutdown(wait=False)  # a healthy answer need not wait for the hanging probes


def bootstrap(
    *,
    name: str,
    peer_url: str,
    founding: list[tuple[str, str]],
    client_port: int,
    client_for: ClientFor,
    timeout: float = 60,
    lost: bool = False,
) -> Bootstrap:
    """How this member starts: found the cluster, or join the one that runs.

    ``lost``: this member ran here before and its data is gone. It must never found a cluster
    (it would split from the members that hold Docker's keys) nor start on an empty data dir
    under its old member id (the leader's log would be ahead of it: etcd's raft refuses, "was
    the raft log corrupted, truncated, or lost?"). It is removed from the running cluster and
    added again, as etcd's runtime-reconfiguration guide says for a member whose data is lost;
    with no other member healthy (no quorum without it) it refuses, changing nothing."""
    running = find_running(founding, name, client_port, client_for)
    # a lost member's death may have cost the others their leader: give them an election
    patience = time.monotonic() + min(timeout, LOST_PATIENCE)
    while lost and running is None and time.monotonic() < patience:
        time.sleep(0.5)
        running = find_running(founding, name, client_port, client_for)
    if running is None:
        if lost:
            raise EtcdError(
                f"etcd member {name} lost its data and no other member answers healthy (the "
                "cluster has no quorum without it), so it can neither rejoin nor be removed; "
                "founding a new cluster here would lose Docker's keys: see "
                "docs/troubleshooting.md#an-etcd-members-data-is-lost"
            )
        return Bootstrap("new", _join(founding), "founding the cluster")
    deadline = time.monotonic() + timeout
    added = False
    removed = ""
    while True:
        _, members = running.members()
        listed = [m for m in members if peer_url in m.get("peerURLs", [])]
        if listed and lost and not added and not removed:
            # its old self, data gone: out first, then in again with an empty data dir
            removed = str(listed[0].get("ID", ""))
            running.member_remove(removed)
            continue
        if listed:
            break
        try:
            running.member_add([peer_url])
            added = True
        except EtcdError as e:
            # etcd refuses a second unstarted member while it would cost the quorum; that
            # member is another host joining now: wait for it to start.
            if time.monotonic() > deadline:
                raise EtcdError(
                    f"etcd member {name} could not be added to the running cluster at "
                    f"{running.endpoint} in {timeout:.0f}s: {e}"
                ) from None
            time.sleep(1)
    urls = {u for m in members for u in m.get("peerURLs", [])}
    if not added and not lost and urls == {u for _, u in founding}:
        # A founder starting late: the static bootstrap it belongs to is still the cluster's
        # whole membership, and joining it as a founder is etcd's well-trodden path.
        return Bootstrap(
            "new", _join(founding), f"a late founder of the cluster at {running.endpoint}"
        )
    current = [(_name(m, name, peer_url), u) for m in members for u in m.get("peerURLs", [])]
    how = "added to the running cluster" if added else "listed in the running cluster"
    if removed:
        how = f"its data lost: removed (member {removed}) and {how}"
    via = running.endpoint if added else ""
    return Bootstrap("existing", _join(current), f"{how} at {running.endpoint}", via)


def withdraw(start: Bootstrap, peer_url: str, client_for: ClientFor) -> str:
    """Undo the ``member add`` of a member that then failed to start: an added member that
    never runs counts in the quorum and holds the cluster hostage. Returns one line."""
    if not start.added_via:
        return "nothing to withdraw"
    try:
        client = client_for(start.added_via)
        _, members = client.members()
        for m in members:
            if peer_url in m.get("peerURLs", []):
                client.member_remove(str(m.get("ID", "")))
                return f"its member add was withdrawn at {start.added_via}"
        return "it was not in the member list any more"
    except EtcdError as e:
        return f"its member add could not be withdrawn: {e}"


#: Where a member that leaves says so first (v2, one key per member id, with a TTL): a member
#: whose removal etcd refuses stops trying once every other member is leaving too.
LEAVING = "/overlaylab/leaving"
LEAVING_TTL = 30
#: How long a leaving member waits for every other one to say it leaves too.
LEAVING_SETTLE = 1.0


def _mark_leaving(own: EtcdClient, member_id: str) -> None:
    with contextlib.suppress(EtcdError):
        own.v2_put(f"{LEAVING}/{member_id}", "leaving", ttl=LEAVING_TTL)


def _unmark_leaving(peer: EtcdClient, member_id: str) -> None:
    """After a removal the cluster keeps: its mark, and the directory once empty."""
    with contextlib.suppress(EtcdError):
        peer.v2_delete(f"{LEAVING}/{member_id}")
        peer.v2_rmdir(LEAVING)


def _all_leaving(client: EtcdClient, other_ids: set[str]) -> bool:
    """Has every one of ``other_ids`` said it is leaving (``_mark_leaving``)? False when the
    cluster cannot say: a member that cannot tell keeps trying, as before."""
    try:
        node = client.v2_get(LEAVING)
    except EtcdError:
        return False
    marked = {n.key.rsplit("/", 1)[-1] for n in node.nodes} if node is not None else set()
    return bool(other_ids) and other_ids <= marked


def _all_healthy(urls: list[str], client_for: ClientFor) -> bool:
    try:
        return bool(urls) and all(client_for(u).health() for u in urls)
    except EtcdError:
        return False


def _none_answer(urls: list[str], client_for: ClientFor) -> bool:
    """Does no other member answer at all (each refused or timed out: stopped)?"""
    for url in urls:
        try:
            client_for(url).health()
            return False
        except EtcdError:
            continue
    return bool(urls)


def _name(member: dict[str, object], me: str, peer_url: str) -> str:
    """A member's name; one added but not started yet has none: name it by its id."""
    if member.get("name"):
        return str(member["name"])
    if peer_url in (member.get("peerURLs") or []):  # type: ignore[operator]
        return me
    return f"unstarted-{member.get('ID', '')}"


def _join(pairs: list[tuple[str, str]]) -> str:
    return ",".join(f"{n}={u}" for n, u in pairs)


def leave(
    *, name: str, own: EtcdClient, client_for: ClientFor, timeout: float = 20, confirm: float = 1.5
) -> str:
    """Remove this member from its cluster while it runs; returns what happened, one line.

    Never raises for a cluster that cannot take the change (no quorum, last member): the
    member is stopped and its data removed in any case, as a teardown must."""
    try:
        _, members = own.members()
    except EtcdError as e:
        return f"not removed from the cluster (its member list is unreadable: {e})"
    me = [m for m in members if m.get("name") == name]
    others = [m for m in members if m.get("name") != name]
    if not me:
        return "not a member any more"
    if not others:
        return "the last member: nothing to remove it from"
    member_id = str(me[0].get("ID", ""))
    other_ids = {str(m.get("ID", "")) for m in others}
    urls = [u for m in others for u in m.get("clientURLs", [])]
    _mark_leaving(own, member_id)
    # In a destroy every member leaves at the same moment: once all have said so there is no
    # cluster left to keep consistent, and a removal only waits on a cluster that is losing
    # its members (requests that time out, refusals; 2 to 7 s of each member in an 8-host
    # destroy). A member that leaves alone (a host removed) waits this long for nothing.
    settle = time.monotonic() + LEAVING_SETTLE
    while time.monotonic() < settle:
        if _all_leaving(own, other_ids):
            return "not removed from the cluster: every other member is leaving too"
        time.sleep(0.1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            own.member_remove(member_id)
            break
        except EtcdError as e:
            # A member that removes itself is stopped by etcd once the removal is applied,
            # often before it answers ("etcdserver: server stopped", then refused): the
            # removal went through if the others no longer list it.
            if _listed_by_others(name, urls, client_for) is False:
                break
            # Every other member is leaving too (a destroy): there is no cluster left to keep
            # consistent, and etcd refuses removals for seconds after each one (its strict
            # reconfiguration check counts only members connected for 5 s): 8 s of an
            # 8-host destroy went on these retries.
            if _all_leaving(own, other_ids):
                return f"not removed from the cluster: every other member is leaving too ({e})"
            # etcd refuses a removal until the members that remain have been connected for a
            # while (its strict reconfiguration check): worth waiting for while they all
            # answer, pointless once one of them is gone (the whole stack is going down).
            if time.monotonic() > deadline or not _all_healthy(urls, client_for):
                # In a destroy, the others can have seen this member's mark and stopped
                # before this member's own store applied theirs (it has no leader left to
                # learn the commit from), so it never sees them all leaving: say they are gone.
                if _none_answer(urls, client_for):
                    return f"not removed from the cluster: every other member is gone ({e})"
                return f"not removed from the cluster: {e}"
            time.sleep(0.5)
    # The remaining members, through one of them: healthy and without this member. Only a
    # look, for the log: the removal is committed once etcd accepted it, the health gate of
    # the `up` that removed this host waits for the new membership (a removed leader leaves
    # the rest without one for an election timeout), and in a destroy the others are leaving
    # too (waiting here cost 3 to 20 s of every destroy).
    problem = "not asked"
    confirm_by = min(deadline, time.monotonic() + confirm)
    while time.monotonic() < confirm_by:
        if _all_leaving(next(iter(client_for(u) for u in urls), own), other_ids):
            return "removed from the cluster; every other member is leaving too"
        refused = 0
        for url in urls:
            try:
                peer = client_for(url)
                _, now = peer.members()
                if peer.health() and all(m.get("name") != name for m in now):
                    _unmark_leaving(peer, member_id)
                    names = sorted(m.get("name", "") for m in now)
                    return (
                        f"removed from the cluster; {len(now)} remain healthy: {', '.join(names)}"
                    )
                problem = f"{url} still lists it or is not healthy"
            except EtcdRefused as e:
                refused += 1
                problem = str(e)
            except EtcdError as e:
                problem = str(e)
        if refused == len(urls):
            # Every other member is stopped: the whole cluster is going down (a destroy), and
            # nobody is left to confirm the removal to.
            return f"removed from the cluster; the others are stopped too ({problem})"
        time.sleep(0.5)
    return f"removed from the cluster; the rest is not healthy yet: {problem}"


def cluster_identity(
    token: str, client_port: int, peer_port: int, previous: str, generation: int = 1
) -> str:
    """The cluster's identity as JSON, refusing a change of it from ``previous`` (the last
    run's output: pulumi-command passes it in PULUMI_COMMAND_STDOUT on an update).

    etcd keeps a cluster's token for good and Docker its endpoints: a new token or port means
    a new, empty cluster, and with it the loss of every key Docker wrote (the network, its
    endpoints). Members updated in place would instead refuse their data dirs half-way. A
    raised ``etcd.generation`` replaces this command, and everything built on the cluster
    with it: then it runs as a create, with no previous output, and nothing is refused."""
    now = {"token": token, "clientPort": client_port, "peerPort": peer_port}
    try:
        before = json.loads(previous) if previous.strip() else None
    except ValueError:
        before = None
    if isinstance(before, dict):
        changed = [k for k in IDENTITY_KEYS if k in before and before[k] != now[k]]
        if changed:
            what = ", ".join(f"{IDENTITY_KEYS[k]} {before[k]!r} -> {now[k]!r}" for k in changed)
            raise EtcdError(
                f"{what}: that is a new etcd cluster, and every key Docker wrote (the network, "
                f"its endpoints) would be lost; put it back, or set etcd.generation to "
                f"{generation + 1} to rebuild the cluster and everything on it with the new "
                f"value (the preview lists what is replaced)"
            )
    return json.dumps(now, sort_keys=True)


def previous_output() -> str:
    return os.environ.get("PULUMI_COMMAND_STDOUT", "")


def _listed_by_others(name: str, urls: list[str], client_for: ClientFor) -> bool | None:
    """Whether the first other member that answers still lists ``name``; None if none does."""
    for url in urls:
        try:
            _, members = client_for(url).members()
        except EtcdError:
            continue
        return any(m.get("name") == name for m in members)
    return None
