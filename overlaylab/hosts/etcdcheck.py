"""Checks on etcd shared by both transports: whose data dir this is, and the health gate."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from overlaylab.errors import EtcdError, LabError
from overlaylab.etcd import EtcdClient
from overlaylab.hosts.pki import client_tls
from overlaylab.hosts.proc import log, wait_for
from overlaylab.hosts.versions import check_etcd_version
from overlaylab.netrule import RouteGuard


def refuse_foreign_data_dir(data: Path, marker: Path, identity: dict[str, str]) -> None:
    """A data dir from another cluster silently rejoins that cluster; members then disagree on
    the cluster id and Docker's discovery hangs with no error. Refuse it up front."""
    if not (data / "member").exists():
        return
    try:
        owner = json.loads(marker.read_text())
    except (OSError, ValueError):
        owner = None
    # Only who the member is and which cluster it founded or joined: the membership it
    # started with is its own business (a member added later started with another one).
    mine = {k: identity[k] for k in ("name", "token")}
    if not isinstance(owner, dict) or {k: owner.get(k) for k in mine} != mine:
        was = (
            f"name {owner.get('name')!r}, token {owner.get('token')!r}"
            if isinstance(owner, dict)
            else "a cluster this project did not create"
        )
        raise EtcdError(
            f"etcd data dir {data} belongs to another cluster ({was}); it would rejoin that "
            f"cluster instead of this one: destroy that stack or remove {data}"
        )


def etcd_health(
    *,
    endpoints: Sequence[str],
    names: Sequence[str],
    bridge: str | None,
    timeout: float,
    tls_dir: str | None = None,
) -> None:
    """Gate: all members healthy, in one cluster, with the expected names, v2 on, version ok."""
    guard = RouteGuard(bridge) if bridge else None
    ctx = client_tls(tls_dir)
    clients = [EtcdClient(e, guard, tls=ctx) for e in endpoints]
    last = ["not asked yet"]

    def healthy() -> bool:
        problems = _cluster_problems(clients, names)
        last[0] = "; ".join(problems)
        return not problems

    try:
        wait_for("all etcd members to be healthy", healthy, timeout, interval=0.1)
    except LabError:
        raise EtcdError(f"etcd cluster not healthy after {timeout:.0f}s: {last[0]}") from None
    for c in clients:
        check_etcd_version(".".join(c.version().split(".")[:2]))
        if not c.v2_enabled():
            raise EtcdError(
                f"etcd at {c.endpoint} does not serve the v2 API that Docker's cluster store "
                f"needs: start it with --enable-v2=true"
            )
    _, members = clients[0].members()
    leaving = sorted({m.get("name", "") for m in members} - set(names))
    also = f"; {', '.join(leaving)} not in the stack (leaving)" if leaving else ""
    log(f"etcd cluster healthy: {len(clients)} members {', '.join(names)}, v2 API on{also}")


def _cluster_problems(clients: Sequence[EtcdClient], names: Sequence[str]) -> list[str]:
    """What keeps the members from being one healthy cluster of ``names`` (empty: nothing)."""
    problems: list[str] = []
    cluster_ids: set[str] = set()
    for c in clients:
        try:
            if not c.health():
                problems.append(f"{c.endpoint} not healthy")
                continue
            cid, members = c.members()
            cluster_ids.add(cid)
            got = sorted(m.get("name", "") for m in members)
            # Every member of the stack, and no unstarted one (a started member has a name).
            # Members of hosts that left the stack may still be listed: the engine deletes them
            # only after the program, and each removes itself from the cluster then.
            missing = sorted(set(names) - set(got))
            if missing or "" in got:
                problems.append(f"{c.endpoint} lists members {got}, expected {sorted(names)}")
        except EtcdError as e:
            problems.append(str(e))
    if not problems and len(cluster_ids) > 1:
        raise EtcdError(
            f"etcd members disagree on the cluster id ({', '.join(sorted(cluster_ids))}): a "
            f"member rejoined an old cluster from a stale data dir; destroy and recreate"
        )
    return problems
