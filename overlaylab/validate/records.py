"""The validator's records, and the clients to a lab it checks (etcd, dockerd, namespaces)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import overlaylab.validate.probes as probes
from overlaylab.config import Host
from overlaylab.errors import LabError
from overlaylab.etcd import EtcdClient
from overlaylab.netrule import RouteGuard
from overlaylab.validate.facts import Facts

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Result:
    check: str
    subject: str
    expected: str
    actual: str
    ok: bool

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        if self.ok:
            return f"{mark} {self.check:<22} {self.subject}: {self.actual}"
        return (
            f"{mark} {self.check:<22} {self.subject}: expected {self.expected}, got {self.actual}"
        )


def _r(check: str, subject: str, expected: Any, actual: Any, ok: bool | None = None) -> Result:
    exp, act = str(expected), str(actual)
    return Result(check, subject, exp, act, exp == act if ok is None else ok)


@dataclass(frozen=True)
class ContainerInfo:
    """A test container as its daemon reports it; ``error`` says why the rest is missing."""

    name: str
    host: str
    ip: str | None = None
    mac: str | None = None
    netns: str | None = None  # its network namespace (SandboxKey), a path on a local lab
    error: str = ""

    @property
    def on_overlay(self) -> bool:
        return self.ip is not None


class Lab:
    """Clients to the lab's etcd members and daemons, built from a spec."""

    def __init__(
        self, spec: dict[str, Any], in_up: bool = False, facts: Facts | None = None
    ) -> None:
        self.spec = spec
        self.facts = facts if facts is not None else Facts()  # what the checks saw, for a picture
        # Run by `up`: hosts that left the stack are deleted only after the program (the
        # engine's order), so their member and node key may still be there: reported, not
        # failed. The validator run by hand afterwards is strict.
        self.in_up = in_up
        bridge = spec["lab"].get("bridge")
        self.guard = RouteGuard(bridge) if bridge else None
        self.ssh_opts: list[str] = list(spec["lab"].get("sshOpts") or [])
        self._tunnels: list[Any] = []
        self.hosts: list[dict[str, Any]] = spec["hosts"]
        self.network: dict[str, Any] = spec["network"]
        self.containers: list[dict[str, Any]] = spec["containers"]
        from overlaylab.hosts.pki import client_tls  # the TLS context the health gate uses too

        tls = client_tls(spec["lab"].get("tlsDir"))
        self.etcd = {
            h["name"]: EtcdClient(h["etcdEndpoint"], self.guard, tls=tls) for h in self.hosts
        }
        self._docker: dict[str, Any] = {}
        self._net_ids: dict[str, str] = {}
        self._infos: dict[str, ContainerInfo] | None = None
        self._etcd_pick: EtcdClient | None = None
        self._infos_lock = threading.Lock()
        self._docker_lock = {h["name"]: threading.Lock() for h in self.hosts}
        self.pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="validate")
        # In-namespace probes need this machine to hold the hosts (a local lab) and root.
        self.local = (
            spec["lab"].get("transport", "local") == "local"
            and all(str(h["dockerHost"]).startswith("unix://") for h in self.hosts)
            and probes.can_enter()
        )

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        return list(self.pool.map(fn, items))

    def address(self, host: str) -> str:
        return str(next(h["address"] for h in self.hosts if h["name"] == host))

    def host_netns(self, host: str) -> str:
        """The namespace of a local lab's host (named as the program names it)."""
        return f"/run/netns/{Host(host, self.address(host)).netns(self.spec['lab']['id'])}"

    def docker(self, host: str) -> Any:
        with self._docker_lock[host]:
            if host not in self._docker:
                self._docker[host] = self._connect(host)
            return self._docker[host]

    def connect_all(self) -> None:
        """Connect to every daemon at once; one that does not answer fails its checks later."""

        def one(host: str) -> None:
            with contextlib.suppress(LabError):
                self.docker(host)

        self.map(one, [h["name"] for h in self.hosts])

    def _connect(self, host: str) -> Any:
        import docker

        url = next(h["dockerHost"] for h in self.hosts if h["name"] == host)
        if url.startswith("ssh://"):
            from overlaylab.sshdocker import SshDockerTunnel

            tunnel = SshDockerTunnel(url, self.ssh_opts, self.guard)
            self._tunnels.append(tunnel)
            url = tunnel.url
        client = docker.DockerClient(base_url=url, version="1.41", timeout=20)
        try:
            client.ping()
        except Exception as e:
            client.close()
            raise LabError(f"dockerd on {host} ({url}) is unreachable: {e}") from None
        return client

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for client in self._docker.values():
            client.close()
        for tunnel in self._tunnels:
            tunnel.close()

    def any_etcd(self) -> EtcdClient:
        """A healthy member (the same one for a whole round)."""
        pick = self._etcd_pick
        if pick is not None:
            return pick
        last: Exception | None = None
        for c in self.etcd.values():
            try:
                if c.health():
                    self._etcd_pick = c
                    return c
            except LabError as e:
                last = e
        raise LabError(f"no etcd member is healthy ({last})")

    def network_id(self, host: str) -> str | None:
        """The overlay's id as ``host``'s daemon lists it (kept once found: ids do not change
        within one validation; the network checks compare every host's anyway)."""
        if host in self._net_ids:
            return self._net_ids[host]
        nets = self.docker(host).networks.list(names=[self.network["name"]])
        nets = [n for n in nets if n.name == self.network["name"]]
        if nets:
            self._net_ids[host] = nets[0].id
            self.facts.network_id(host, nets[0].id)
        return nets[0].id if nets else None

    def container(self, c: dict[str, Any]) -> ContainerInfo:
        """A test container on the overlay, or why it is not there."""
        import docker

        name, host = c["name"], c["host"]
        try:
            obj = self.docker(host).containers.get(name)
        except docker.errors.NotFound:
            return ContainerInfo(name, host, error="no such container")
        except Exception as e:
            return ContainerInfo(name, host, error=str(e))
        if obj.status != "running":
            return ContainerInfo(name, host, error=f"container is {obj.status}")
        settings = obj.attrs["NetworkSettings"]
        net = settings["Networks"].get(self.network["name"])
        if not net or not net.get("IPAddress"):
            return ContainerInfo(name, host, error=f"not attached to {self.network['name']}")
        sandbox = settings.get("SandboxKey") if self.local else None
        return ContainerInfo(name, host, net["IPAddress"], net["MacAddress"].lower(), sandbox)

    def container_infos(self) -> dict[str, ContainerInfo]:
        """Every test container, inspected once per round (see :meth:`refresh`)."""
        with self._infos_lock:
            if self._infos is None:
                self._infos = {i.name: i for i in self.map(self.container, self.containers)}
                for i in self._infos.values():
                    self.facts.container(i.name, i.host, i.ip, i.mac, i.error)
            return self._infos

    def refresh(self) -> None:
        """Forget what was read from the daemons and etcd: a retry must see the lab anew."""
        with self._infos_lock:
            self._infos = None
            self._etcd_pick = None
