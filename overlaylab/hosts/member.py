"""One etcd member's lifecycle, the same for every transport: start it (founding the cluster,
or joining the one that runs with ``member add``), and stop it (leaving with ``member
remove`` first), refusing a data dir of another cluster.

What differs between transports is only the seam, :class:`EtcdSeat`: where the member's files
live, how its process is started and stopped, and how this machine reaches etcd (route
guard, TLS). ``netns_daemons.NamespaceEtcd`` runs it as a process in a namespace,
``systemd.SystemdEtcd`` as the host's etcd unit. The cluster logic itself (found, join,
leave, withdraw) is ``overlaylab.membership``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from overlaylab import membership
from overlaylab.errors import LabError
from overlaylab.etcd import EtcdClient, etcd_url
from overlaylab.hosts.etcdcheck import refuse_foreign_data_dir
from overlaylab.hosts.proc import log, wait_for


@dataclass(frozen=True, kw_only=True)
class Member:
    """A member as the program names it (``etcd-up``'s flags)."""

    name: str
    address: str
    client_port: int
    peer_port: int
    token: str
    initial_cluster: str  # name=peer-url,...: the founding membership
    #: (heartbeat, election) in ms as the stack sets them, or None: the seat's own
    timing: tuple[int, int] | None = None


@dataclass(frozen=True, kw_only=True)
class Start:
    """How the seam starts the member: its URLs and how it becomes part of the cluster."""

    member: Member
    client: str  # its client URL on the lab's segment
    peer: str
    loopback: str  # its client URL on 127.0.0.1 (its certificate covers it)
    initial_cluster: str  # the membership it starts with (founding, or the running one)
    state: str  # "new" or "existing"


class EtcdSeat(Protocol):
    """Where and how one transport runs a member."""

    data: Path  # etcd's data dir
    marker: Path  # who the member is (name, token, client URL): written before it starts
    tls: bool
    listen_timeout: float  # how long a start may take to listen
    #: A failed start removes everything (a namespace host), or leaves the unit to its
    #: restarts (a systemd host, whose unit restarts on failure).
    clean_failed_start: bool

    def prepare(self) -> None:
        """Before the cluster is asked: what the member needs to start (etcd itself)."""

    def start(self, start: Start) -> str:
        """Start (or restart, or leave running) the member; returns where it runs, for the log."""

    def listening(self) -> bool:
        """Whether the member listens for clients yet; raises if it exited."""

    def client_for(self, url: str) -> EtcdClient:
        """A client of any member, as this machine reaches it."""

    def own(self, client_url: str) -> EtcdClient:
        """A client of this member (``client_url``, as its marker recorded it)."""

    def ours(self) -> bool:
        """Whether anything of this lab's member is here (a second destroy does nothing)."""

    def stop(self, name: str) -> None:
        """Stop the member's process."""

    def remove(self) -> str:
        """Remove what is left besides the data dir and the marker; returns what, for the log."""


def member_up(seat: EtcdSeat, m: Member) -> None:
    """Start this host's member; return once it listens. It founds the cluster with
    ``initial_cluster`` (static bootstrap) unless a member of it answers healthy: then it
    joins the running cluster (``member add``, ``--initial-cluster-state existing``). A
    member with data restarts on it (etcd reads the membership only for an empty data dir)."""
    client = etcd_url(m.address, m.client_port, seat.tls)
    peer = etcd_url(m.address, m.peer_port, seat.tls)
    identity = {"name": m.name, "token": m.token, "client": client}
    refuse_foreign_data_dir(seat.data, seat.marker, identity)
    seat.prepare()
    start = membership.Bootstrap("new", m.initial_cluster, "restarting on its data")
    if not (seat.data / "member").exists():
        # Found the cluster, or join the one that runs (a host added to a running stack). A
        # marker that says it ran, with no data: its data is gone, and it rejoins.
        start = membership.bootstrap(
            name=m.name,
            peer_url=peer,
            founding=membership.parse_cluster(m.initial_cluster),
            client_port=m.client_port,
            client_for=seat.client_for,
            lost=_ran(seat.marker),
        )
    seat.marker.parent.mkdir(parents=True, exist_ok=True)
    seat.marker.write_text(json.dumps(identity))
    where = seat.start(
        Start(
            member=m,
            client=client,
            peer=peer,
            loopback=etcd_url("127.0.0.1", m.client_port, seat.tls),
            initial_cluster=start.initial_cluster,
            state=start.state,
        )
    )
    # Static bootstrap: a member cannot be healthy before a quorum has started, so this waits
    # only for the listener; the cluster-wide health gate comes after all members.
    try:
        wait_for(f"etcd {m.name} to listen on {client}", seat.listening, seat.listen_timeout, 0.05)
    except LabError:
        log(f"etcd {m.name} did not start: {membership.withdraw(start, peer, seat.client_for)}")
        if seat.clean_failed_start:
            # A failed create leaves nothing: Pulumi records no resource, so no delete would
            # run, and the data dir left behind would be refused as another cluster's next time.
            member_down(seat, m.name)
        raise
    # it listens, so its data dir exists: from now on a member without data lost it
    seat.marker.write_text(json.dumps({**identity, "ran": True}))
    log(f"etcd {m.name}: {where}, peers {peer}: {start.how}")


def _ran(marker: Path) -> bool:
    """Did this member run here (its marker says so, written once it listened)?"""
    try:
        return json.loads(marker.read_text()).get("ran") is True
    except (OSError, ValueError, AttributeError):
        return False


def member_down(seat: EtcdSeat, name: str) -> None:
    """Remove the member from its cluster while it runs (``member remove``), so the others
    shrink their quorum first; stop it and remove its data."""
    if not seat.ours():
        log(f"etcd {name}: nothing of this lab on the host")
        return
    log(f"etcd {name}: {leave(seat, name)}")
    seat.stop(name)
    shutil.rmtree(seat.data, ignore_errors=True)
    seat.marker.unlink(missing_ok=True)
    log(f"etcd {name}: data removed, {seat.remove()}")


def leave(seat: EtcdSeat, name: str) -> str:
    try:
        client = json.loads(seat.marker.read_text())["client"]
    except (OSError, ValueError, KeyError, TypeError):
        return "not removed from the cluster (no client address recorded)"
    return membership.leave(name=name, own=seat.own(client), client_for=seat.client_for)
