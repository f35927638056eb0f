"""The ``HostTransport`` interface: what the components do on a host, whatever the transport.

A verb's own arguments (names, addresses, ports, the image) are method parameters, the same
for every transport. Where a host is, and how to reach its daemons, is the implementation's
constructor: ``NamespaceHost(netns=, host_dir=, lab_id=, bridge=, tls_dir=)`` for a namespace
on this machine, ``SystemdHost(tls_dir=)`` for the machine the verb runs on. So a new verb is
one method here and one per transport; a new transport is one new class (a module of its own)
and a branch in ``overlaylab.hostops.make_host``, which builds a HostTransport from the
placement flags.

Every method is idempotent: "up" on something that is up and "down" on something that is gone
are no-ops, so ``pulumi up`` twice and ``destroy`` after a failed ``up`` are harmless. A failed
"up" leaves nothing behind (Pulumi records no resource for it, so no "down" would run).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from overlaylab.errors import LabError
from overlaylab.hosts.member import Member


class HostTransport(Protocol):
    """One host of the lab: an etcd member, a dockerd in its cluster store, the test image."""

    def preflight(self, *, client_port: int, peer_port: int, address: str | None = None) -> None:
        """Refuse a host that cannot run the lab (tools, versions, ports), changing nothing.
        With ``address`` (the host's lab address), report the MTU of the interface holding it."""

    def pki_install(self, *, name: str) -> None:
        """Install this host's certificates (a base64 tar on stdin, from ``pki-bundle``)."""

    def pki_remove(self, *, name: str) -> None:
        """Remove what ``pki_install`` installed."""

    def etcd_up(self, m: Member) -> None:
        """Start this host's member; return once it listens (``member.member_up``)."""

    def etcd_down(self, *, name: str) -> None:
        """Remove the member from its cluster while it runs, stop it and remove its data
        (``member.member_down``)."""

    def docker_up(
        self,
        *,
        hostname: str,
        cluster_store: str,
        advertise: str,
        etcd_endpoint: str,
        start_after: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Run dockerd on ``cluster_store``; return once it has joined (registered, serf on).
        ``start_after``: the (host, advertise) of the daemons that come before this one. A
        systemd host starts once the last of them has joined (``dockerd.wait_for_turn``); a
        namespace host starts at once, behind its serf door until it has joined the first of
        them (``netns_daemons.docker_up``)."""

    def docker_down(self, *, hostname: str, advertise: str, etcd_endpoint: str) -> None:
        """Undo ``docker_up``, and delete the daemon's node key from the store."""

    def serf_mesh(
        self, *, hostname: str, advertise: str, etcd_endpoint: str, peers: list[str], timeout: float
    ) -> None:
        """Wait until this dockerd's serf has seen every peer join, re-announcing the host in
        the store while it has not (``overlaylab.hosts.serf``)."""

    def image_import(self, *, hostname: str, image: str) -> None:
        """Make ``image`` (busybox) present in this host's daemon."""

    def image_remove(self, *, hostname: str, image: str) -> None:
        """Remove ``image`` if ``image_import`` put it there."""

    def names_settle(
        self, *, hostname: str, container: str, names: list[str], network: str, image: str
    ) -> None:
        """Return once ``container`` resolves every one of ``names``, refreshing the daemon's
        names with an endpoint change when they do not come (``overlaylab.hosts.names``)."""

    # The member's lifecycle (found or join on etcd_up, leave on etcd_down) is the same for
    # both transports, in ``member``; each transport supplies only its seat (``EtcdSeat``:
    # where the member's files live, how it starts and stops, how etcd is reached).
    # Per-transport MTU is placement (a constructor argument).


def need(verb: str, **placement: str | None) -> list[str]:
    """The placement values a verb needs, in order; one line naming the flags if any is unset."""
    missing = [k for k, v in placement.items() if v is None]
    if missing:
        flags = ", ".join("--" + m.replace("_", "-") for m in missing)
        raise LabError(f"{verb} on a local namespace host needs {flags}")
    return [v for v in placement.values() if v is not None]
