"""Node keys of hosts not in the stack (``/docker/nodes/<address:port>``): which are stale, and
deleting those safely.

Each dockerd in cluster-store mode registers itself under ``/docker/nodes`` with a TTL and
writes the key again every heartbeat (libkv discovery: ``discovery.heartbeat`` 20 s,
``discovery.ttl`` 60 s by default), so a daemon's key is always a key with a TTL, and a dead
daemon's key expires by itself. A key there is only left for good when it has no TTL: written
by hand or by a tool, or put back by a restore of an old keyspace. Every daemon treats it as a
host (its discovery lists it; serf tries to join it), and the validator fails
``etcd.nodes-exact`` on it.

Stale, and deleted by `up`: a key whose address is no host's advertise address in the stack
*and* that has no TTL. Never deleted: a stack host's key, and any key with a TTL (it was written
within its TTL, so a daemon may own it: a host leaving the stack in this run, another lab's
daemon on the same cluster; if none does, it expires by itself). The delete is a compare and
delete on the key's ``modifiedIndex`` as read, so a key written again since (a daemon
re-registering) is left alone; a running daemon whose key were deleted anyway writes it again
within one heartbeat (as the serf gate's re-announcement does on purpose)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from overlaylab.errors import LabError
from overlaylab.etcd import V2Node

NODES = "/docker/nodes"


class NodeStore(Protocol):
    def v2_get(self, key: str, recursive: bool = True) -> V2Node | None: ...

    def v2_delete(
        self, key: str, recursive: bool = False, prev_index: int | None = None
    ) -> bool: ...


@dataclass(frozen=True)
class ForeignNode:
    """A node key whose address is no host of the stack."""

    address: str
    ttl: int | None
    modified: int

    @property
    def key(self) -> str:
        return f"{NODES}/{self.address}"

    @property
    def stale(self) -> bool:
        """No TTL: no daemon refreshes it, and it never expires."""
        return self.ttl is None

    def __str__(self) -> str:
        if self.stale:
            return (
                f"node key {self.key} is of no host in the stack and has no TTL (no daemon "
                "refreshes it; every daemon takes it for a host): `up` deletes it"
            )
        return (
            f"node key {self.key} is of no host in the stack but was refreshed within its TTL "
            f"({self.ttl}s left): a running daemon may own it (a host leaving the stack, another "
            "lab's daemon on this cluster); left alone, it expires once nothing refreshes it"
        )


def foreign_nodes(store: NodeStore, advertises: Sequence[str]) -> list[ForeignNode]:
    """The node keys of hosts not in the stack (``advertises``: each host's ``ip:port``)."""
    root = store.v2_get(NODES, recursive=True)
    ours = set(advertises)
    out = []
    for n in root.nodes if root else ():
        address = n.key.rsplit("/", 1)[-1]
        if not n.dir and address not in ours:
            out.append(ForeignNode(address, n.ttl, n.modified))
    return sorted(out, key=lambda f: f.address)


def clear_stale_nodes(store: NodeStore, advertises: Sequence[str]) -> list[str]:
    """Delete the stale node keys (no TTL, of no host in the stack), each only while it is as
    it was read. Returns the keys deleted; a key written since, or one with a TTL, stays."""
    removed = []
    for f in foreign_nodes(store, advertises):
        if f.stale and store.v2_delete(f.key, prev_index=f.modified):
            removed.append(f.key)
    return removed


def before_change(stores: Sequence[NodeStore], advertises: Sequence[str]) -> str | None:
    """The program's clean-up in `up`, through the first member that answers: one line saying
    what was deleted, or None when nothing was (or no member answered: the survey and the
    validator say why)."""
    for store in stores:
        try:
            removed = clear_stale_nodes(store, advertises)
        except LabError:
            continue
        if removed:
            gone = ", ".join(removed)
            return f"stale node keys deleted (of no host in the stack, no TTL): {gone}"
        return None
    return None
