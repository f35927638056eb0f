"""The validator's records, and the clients to a lab it checks (etcd, dockerd, namespaces)."""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import overlaylab.validate.probes as probes
from overlaylab import sandboxkey
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


#: Docker's MTU option on an overlay network (the VXLAN packets'; containers get 50 less).
MTU_OPTION = "com.docker.network.driver.mtu"


def spec_networks(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The spec's overlays, first first: ``networks``, or its one ``network`` (a spec of the
    seed's single section, which carries no MTU: see :meth:`Lab.expected_mtu`)."""
    nets = spec.get("networks")
    return list(nets) if nets else [dict(spec["network"])]


def networks_of(spec: dict[str, Any], c: dict[str, Any]) -> list[str]:
    """The networks a spec's container joins: its ``networks``, else the first network."""
    return list(c.get("networks") or [spec_networks(spec)[0]["name"]])


@dataclass(frozen=True)
class ContainerInfo:
    """A test container as its daemon reports it; ``error`` says why the rest is missing."""

    name: str
    host: str
    ip: str | None = None
    mac: str | None = None
    netns: str | None = None  # its network namespace (SandboxKey), a path on a local lab
    error: str = ""
    network: str = ""  # the network ip and mac are on (the Lab view's)

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
        #: Every overlay, first first; ``network`` and ``containers`` are those of one of them
        #: (the first here; a :meth:`view` for each other), ``all_containers`` every one.
        self.networks: list[dict[str, Any]] = spec_networks(spec)
        self.network: dict[str, Any] = self.networks[0]
        self.all_containers: list[dict[str, Any]] = spec["containers"]
        self.containers: list[dict[str, Any]] = self._on(self.network["name"])
        #: Appended to the subjects of per-network checks: nothing on a lab of one network.
        self.suffix = ""
        self._net_id_cache: dict[str, dict[str, str]] = {n["name"]: {} for n in self.networks}
        self._ifnames: dict[tuple[str, str], dict[str, str]] = {}
        from overlaylab.hosts.pki import client_tls  # the TLS context the health gate uses too

        tls = client_tls(spec["lab"].get("tlsDir"))
        self.etcd = {
            h["name"]: EtcdClient(h["etcdEndpoint"], self.guard, tls=tls) for h in self.hosts
        }
        self._docker: dict[str, Any] = {}
        self._net_ids: dict[str, str] = self._net_id_cache[self.network["name"]]
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

    def _on(self, net: str) -> list[dict[str, Any]]:
        return [c for c in self.all_containers if net in networks_of(self.spec, c)]

    def networks_of(self, container: str) -> list[str]:
        c = next((c for c in self.all_containers if c["name"] == container), None)
        return networks_of(self.spec, c) if c else []

    def view(self, net: dict[str, Any]) -> Lab:
        """This lab as seen by the checks of network ``net``: its containers, its id on each
        host, its containers' addresses on it; the clients are shared. Only the first
        network's view fills the page's facts (the picture draws the first network)."""
        v = copy.copy(self)
        v.network = net
        v.containers = self._on(net["name"])
        v._net_ids = self._net_id_cache[net["name"]]
        v._infos = None
        v._infos_lock = threading.Lock()
        v.suffix = f" on {net['name']}" if len(self.networks) > 1 else ""
        if net["name"] != self.networks[0]["name"]:
            v.facts = Facts()
        return v

    def views(self) -> list[Lab]:
        return [self.view(n) for n in self.networks]

    def expected_mtu(self) -> int:
        """The MTU of the containers' interfaces on this network, from the configuration: the
        spec's ``mtu``; for a spec of the seed's single network (none carries one), from the
        option the program gave Docker (the first host's network inspect), or, with none,
        Docker's own default (1500 - 50). Never from what the containers report."""
        if self.network.get("mtu"):
            return int(self.network["mtu"])
        from overlaylab.defaults import DOCKER_OVERLAY_MTU, VXLAN_OVERHEAD

        # The network is global: any daemon's inspect has its options; the first that answers.
        last: Exception | None = None
        for host in (h["name"] for h in self.hosts):
            try:
                net_id = self.network_id(host)
                if not net_id:
                    continue
                attrs = self.docker(host).networks.get(net_id).attrs
            except Exception as e:
                last = e
                continue
            option = (attrs.get("Options") or {}).get(MTU_OPTION)
            return (int(option) if option else DOCKER_OVERLAY_MTU) - VXLAN_OVERHEAD
        raise LabError(f"no daemon lists network {self.network['name']} ({last or 'not found'})")

    def sandbox_dir(self, host: str) -> str | None:
        """Where a local lab's daemon on ``host`` keeps its sandboxes (``<exec-root>/netns``;
        the program's exec-root is ``x`` beside the daemon's socket)."""
        url = str(next(h["dockerHost"] for h in self.hosts if h["name"] == host))
        if not (self.local and url.startswith("unix://")):
            return None
        return os.path.join(os.path.dirname(url[len("unix://") :]), "x", "netns")

    def overlay_sandboxes(self, host: str, net_id: str) -> list[str]:
        """The overlay network's sandbox namespaces on ``host`` (Docker 20.10's layout)."""
        where = self.sandbox_dir(host)
        if not where:
            return []
        # Only a file that is still a namespace's mount point: Docker unmounts a network's
        # sandbox when its last container there leaves, and the file can stay behind.
        mounted = _mount_points()
        found = sandboxkey.in_dir(where, net_id)
        return [f for f in found if os.path.realpath(f) in mounted or f in mounted]

    def addresses(self, info: ContainerInfo) -> dict[str, str]:
        """A container's IPv4 addresses by interface, as its kernel has them (read in its
        namespace on a local lab, through ``ip`` in it otherwise); kept per container id."""
        key = (info.host, info.name)
        if key not in self._ifnames:
            if self.local and info.netns:
                found = probes.addresses(info.netns)
            else:
                found = self._exec_addresses(info)
            if not found:
                return {}
            self._ifnames[key] = found
        return self._ifnames[key]

    def _exec_addresses(self, info: ContainerInfo) -> dict[str, str]:
        try:
            obj = self.docker(info.host).containers.get(info.name)
            res = obj.exec_run(["ip", "-o", "-4", "addr", "show"])
        except Exception:
            return {}
        if res.exit_code != 0:
            return {}
        return parse_ip_addr(res.output.decode(errors="replace"))

    def ifname(self, info: ContainerInfo) -> str | None:
        """The container's interface on the view's network: the one holding its address
        there (eth0 for the first network of a container on one, not assumed)."""
        if info.ip is None:
            return None
        return next((i for i, a in self.addresses(info).items() if a == info.ip), None)

    def in_overlays(self, ip: str) -> bool:
        """Whether ``ip`` is in one of the spec's overlays (probes go to no other address)."""
        addr = ipaddress.ip_address(ip)
        return any(addr in ipaddress.ip_network(n["subnet"]) for n in self.networks)

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
        return ContainerInfo(
            name, host, net["IPAddress"], net["MacAddress"].lower(), sandbox,
            network=self.network["name"],
        )  # fmt: skip

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
            self._ifnames.clear()


def parse_ip_addr(text: str) -> dict[str, str]:
    """``ip -o -4 addr show`` (busybox's or iproute2's): address by interface."""
    out: dict[str, str] = {}
    for ln in text.splitlines():
        parts = ln.split()
        if len(parts) >= 4 and parts[2] == "inet":
            out.setdefault(parts[1].rstrip(":").split("@")[0], parts[3].split("/")[0])
    return out


def _mount_points() -> set[str]:
    """Every mount point of this process's mount namespace (``/proc/self/mountinfo``'s
    fifth field); a local lab's daemons share it."""
    try:
        with open("/proc/self/mountinfo") as f:
            return {ln.split()[4].replace("\\040", " ") for ln in f if len(ln.split()) > 4}
    except OSError:
        return set()
