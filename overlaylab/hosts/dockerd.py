"""Facts about dockerd that both transports rely on: its node key, serf, the Engine API, and
the order the daemons start in."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from overlaylab.errors import DockerError, LabError
from overlaylab.etcd import V2Node
from overlaylab.hosts.proc import log, run

SERF_PORT = 7946


def node_key(advertise: str) -> str:
    """The v2 key a daemon registers in its cluster store (``/docker/nodes/<advertise>``)."""
    return f"/docker/nodes/{advertise}"


def serf_listening(netns: str | None = None) -> bool:
    """Has dockerd started the overlay's gossip (serf on TCP 7946)? It does so only once its
    store discovery has seen this host, which is when it knows its own advertise address."""
    prefix = ["nsenter", f"--net=/run/netns/{netns}", "--"] if netns else []
    out = run([*prefix, "ss", "-Hltn", "sport", "=", f":{SERF_PORT}"], check=False).stdout
    return bool(out.strip())


def docker_api(socket_path: str, timeout: float = 30) -> Any:
    """A Docker Engine API client on a unix socket (API 1.41 = Docker 20.10; no version probe).

    ``docker`` is imported here, not at module level: real hosts have no docker SDK."""
    import docker

    return docker.APIClient(base_url=f"unix://{socket_path}", version="1.41", timeout=timeout)


class StoreReader(Protocol):
    """What the start order reads of the cluster store (an ``EtcdClient``)."""

    def v2_get(self, key: str, recursive: bool = True) -> V2Node | None: ...


def wait_for_turn(
    before: Sequence[tuple[str, str]],
    *,
    hostname: str,
    advertise: str,
    etcd: StoreReader,
    serf_on: Callable[[str, str], bool],
    stall: float = 75,
) -> None:
    """Hold this host's dockerd until the daemon started before it has joined: its node key is
    in the store and its serf listens. ``before`` is every (host, advertise) that starts
    earlier, in order; the last one is waited for. ``serf_on(host, advertise)``: does that
    host's serf listen (the transport knows how to look). A daemon whose own node key is
    already in the store has joined before: this is a re-run of its create (an update), whose
    predecessors may since have left the stack, so it does not wait.

    On systemd hosts daemons start one after another because Docker 20.10 joins serf once,
    to one neighbour, when it starts (docs/design.md; namespace hosts use a serf door
    instead). The order is kept here, not as a dependency
    between the resources, so that a destroy stops all daemons at once. Fails once no
    daemon before this one has joined for ``stall`` seconds (one failed: its own error says
    why), naming the first that has not."""
    if not before:
        return
    prev_host, prev = before[-1]
    progress, since = -1, time.monotonic()
    while True:
        try:
            nodes = etcd.v2_get("/docker/nodes")
        except LabError:
            nodes = None
        present = {n.key.rsplit("/", 1)[-1] for n in nodes.nodes} if nodes else set()
        if advertise in present:
            log(f"dockerd {hostname}: already in the store ({advertise}); not waiting")
            return
        if prev in present and serf_on(prev_host, prev):
            log(f"dockerd {hostname}: {prev_host} has joined ({prev}, serf on); starting")
            return
        joined = sum(1 for _, adv in before if adv in present)
        if joined > progress:
            progress, since = joined, time.monotonic()
        elif time.monotonic() - since > stall:
            waiting = next((h for h, adv in before if adv not in present), None)
            why = (
                f"{waiting} has not registered in the store (its docker-up says why)"
                if waiting
                else f"{prev_host} has registered, but its serf (port {SERF_PORT}) does not "
                f"answer from here"
            )
            raise DockerError(
                f"dockerd on {hostname} starts after the daemons before it have joined, and "
                f"none more did in {stall:.0f}s: {why}"
            )
        time.sleep(0.2)


ENDPOINTS = "/docker/network/v1.0/endpoint"


def stale_endpoints(store: StoreReader, advertise_ip: str) -> list[tuple[str, str]]:
    """(network id, endpoint name) of every endpoint the store locates on this host."""
    node = store.v2_get(ENDPOINTS, recursive=True)
    out: list[tuple[str, str]] = []
    for n in node.walk() if node else []:
        if n.dir or not n.value:
            continue
        try:
            v = json.loads(n.value)
        except ValueError:
            continue
        if isinstance(v, dict) and v.get("locator") == advertise_ip and v.get("name"):
            out.append((n.key.rstrip("/").split("/")[-2], str(v["name"])))
    return out


def clear_stale_endpoints(
    docker: Sequence[str], store: StoreReader, advertise_ip: str, hostname: str
) -> list[str]:
    """Endpoints the store locates on this host that no container of this daemon holds: left
    by a daemon that died with containers on the overlay. A new container of the same name is
    then refused ("endpoint with name X already exists in network Y", moby/libnetwork#1108).
    Removed through Docker itself, with the forced disconnect that is the known remedy (it
    also counts the network's endpoints down), never by deleting keys; an endpoint a
    container of this daemon holds is never touched. Returns what was removed."""
    res = run([*docker, "ps", "-a", "--format", "{{.Names}}"], check=False)
    if res.returncode != 0:
        return []  # the daemon does not answer: nothing is removed on a guess
    held = set(res.stdout.split())
    removed = []
    for net, name in stale_endpoints(store, advertise_ip):
        if name in held:
            continue
        gone = run([*docker, "network", "disconnect", "-f", net, name], check=False)
        if gone.returncode == 0:
            removed.append(f"{name} in {net[:12]}")
    if removed:
        log(f"dockerd {hostname}: stale endpoints removed: {', '.join(removed)}")
    return removed
