"""The lab's configuration as plain, validated values.

Everything Pulumi-specific stays out of here: the program turns a stack's config into a raw
mapping, :func:`parse` turns that into a :class:`LabConfig` or raises :class:`ConfigError`
with one line saying what is wrong and how to fix it. Nothing is created before this passes.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from overlaylab.errors import ConfigError

#: Config keys, under the project's namespace (``overlay-etcd:<key>``).
KEYS = ("lab", "hosts", "etcd", "docker", "network", "containers", "image", "ssh")

_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_CONTAINER = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_LAB_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")
_IFNAME_MAX = 15  # IFNAMSIZ - 1


@dataclass(frozen=True)
class Host:
    name: str
    address: str

    def netns(self, lab_id: str) -> str:
        return f"{lab_id}-{self.name}"

    def veth(self, lab_id: str) -> str:
        # Interface names are limited to 15 bytes; a digest keeps them short and unique per lab.
        return "ov" + hashlib.sha1(f"{lab_id}/{self.name}".encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Container:
    name: str
    host: str


@dataclass(frozen=True)
class LabConfig:
    lab_id: str
    transport: str
    segment: ipaddress.IPv4Network
    bridge: str | None
    bridge_address: str
    state_dir: str
    hosts: tuple[Host, ...]
    etcd_token: str
    etcd_client_port: int
    etcd_peer_port: int
    advertise_port: int
    network_name: str
    subnet: ipaddress.IPv4Network
    gateway: str
    mtu: int | None
    containers: tuple[Container, ...]
    image: str
    image_source: str
    etcd_tls: bool = False
    store_all: bool = False
    ssh_user: str = "root"
    ssh_port: int = 22
    identity_file: str = "~/.overlaylab/seed/id_ssh"
    warnings: tuple[str, ...] = field(default=())

    @property
    def prefixlen(self) -> int:
        return self.segment.prefixlen

    @property
    def local_bridge(self) -> str:
        """The bridge of a local lab (which always has one)."""
        if self.bridge is None:
            raise ValueError("this lab has no bridge: it is not a local lab")
        return self.bridge

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def host_dir(self, host: Host) -> str:
        return f"{self.state_dir}/{self.lab_id}/{host.name}"

    def docker_socket(self, host: Host) -> str:
        return f"{self.host_dir(host)}/docker.sock"

    def docker_host(self, host: Host) -> str:
        if self.transport == "ssh":
            return f"ssh://{self.ssh_user}@{host.address}:{self.ssh_port}"
        return f"unix://{self.docker_socket(host)}"

    def ssh_opts(self) -> list[str]:
        """For ``ssh`` as Docker runs it: our key, and host keys kept beside it, not in ~."""
        known = f"{self.identity_file.rsplit('/', 1)[0]}/known_hosts"
        return [
            "-i",
            self.identity_file,
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "BatchMode=yes",
        ]

    @property
    def etcd_scheme(self) -> str:
        return "https" if self.etcd_tls else "http"

    @property
    def pki_dir(self) -> str | None:
        """Where a TLS lab's CA, member and client certificates are made, on the machine that
        runs the program (for ssh stacks beside the identity file)."""
        if not self.etcd_tls:
            return None
        if self.transport == "ssh":
            return f"{self.identity_file.rsplit('/', 1)[0]}/pki"
        return f"{self.state_dir}/{self.lab_id}/pki"

    @property
    def host_pki_dir(self) -> str | None:
        """Where each host reads them: the same directory here, /etc/overlaylab/pki on a host."""
        if not self.etcd_tls:
            return None
        return "/etc/overlaylab/pki" if self.transport == "ssh" else self.pki_dir

    def client_url(self, host: Host) -> str:
        return f"{self.etcd_scheme}://{host.address}:{self.etcd_client_port}"

    def peer_url(self, host: Host) -> str:
        return f"{self.etcd_scheme}://{host.address}:{self.etcd_peer_port}"

    def initial_cluster(self) -> str:
        return ",".join(f"{h.name}={self.peer_url(h)}" for h in self.hosts)

    def advertise(self, host: Host) -> str:
        return f"{host.address}:{self.advertise_port}"

    def cluster_store(self, host: Host) -> str:
        # As in the seed, each daemon talks to its own host's member; with storeEndpoints
        # 'all' it knows every member, so losing its own member does not cut it off.
        hosts = [host, *(h for h in self.hosts if h != host)] if self.store_all else [host]
        return "etcd://" + ",".join(f"{h.address}:{self.etcd_client_port}" for h in hosts)


def parse(raw: Mapping[str, Any], stack_file: str = "the stack file") -> LabConfig:
    """Validate a stack's raw config (keys of :data:`KEYS`) and return the lab's plain values.

    One small function per section, called in the order their errors are reported."""
    where = f"in {stack_file}"
    lab = _mapping(raw.get("lab") or {}, "lab", where)
    etcd = _mapping(raw.get("etcd") or {}, "etcd", where)
    docker = _mapping(raw.get("docker") or {}, "docker", where)
    network = _mapping(raw.get("network") or {}, "network", where)
    image = _mapping(raw.get("image") or {}, "image", where)
    fields: dict[str, Any] = _lab_identity(lab, where)
    fields |= _ssh(raw, fields["lab_id"], fields["transport"], where)
    segment = _network(lab.get("segment", "192.168.205.0/24"), "lab.segment", where)
    hosts = _hosts(raw.get("hosts"), segment, where)
    fields |= _lab_bridge(lab, fields["lab_id"], fields["transport"], segment, hosts, where)
    fields |= _etcd(etcd, where)
    fields |= _docker(docker, etcd, where)
    fields |= _overlay(network, segment, where)
    containers = _containers(raw.get("containers") or [], hosts, where)
    fields |= _image(image, where)
    return LabConfig(
        segment=segment,
        hosts=tuple(hosts),
        containers=tuple(containers),
        warnings=tuple(_warnings(hosts)),
        **fields,
    )


def _lab_identity(lab: Mapping[str, Any], where: str) -> dict[str, Any]:
    lab_id = str(lab.get("id", "seed"))
    if not _LAB_ID.match(lab_id):
        raise ConfigError(
            f"lab.id {lab_id!r} is invalid: use 1-16 lowercase letters, digits or '-' ({where})"
        )
    transport = str(lab.get("transport", "local"))
    if transport not in ("local", "ssh"):
        raise ConfigError(
            f"lab.transport {transport!r} is not supported: use 'local' or 'ssh' ({where})"
        )
    return {"lab_id": lab_id, "transport": transport}


def _ssh(raw: Mapping[str, Any], lab_id: str, transport: str, where: str) -> dict[str, Any]:
    ssh = _mapping(raw.get("ssh") or {}, "ssh", where)
    ssh_user = str(ssh.get("user", "root"))
    if not re.match(r"^[a-z_][a-z0-9_-]*$", ssh_user):
        raise ConfigError(f"ssh.user {ssh_user!r} is not a valid user name ({where})")
    ssh_port = _port(ssh.get("port", 22), "ssh.port", where)
    identity_file = str(ssh.get("identityFile", f"~/.overlaylab/{lab_id}/id_ssh"))
    if transport == "ssh":
        key = raw.get("sshPrivateKey")
        if not key:
            raise ConfigError(
                "sshPrivateKey is not set: pulumi config set --secret overlay-etcd:sshPrivateKey "
                f"< ~/.ssh/id_ed25519 ({where})"
            )
        if "PRIVATE KEY-----" not in str(key):
            raise ConfigError(
                f"sshPrivateKey does not look like a private key (no 'PRIVATE KEY' armour): set "
                f"it from the key file itself, e.g. < ~/.ssh/id_ed25519 ({where})"
            )
    return {"ssh_user": ssh_user, "ssh_port": ssh_port, "identity_file": identity_file}


def _hosts(hosts_raw: Any, segment: ipaddress.IPv4Network, where: str) -> list[Host]:
    if not isinstance(hosts_raw, Sequence) or isinstance(hosts_raw, str) or not hosts_raw:
        raise ConfigError(
            f"hosts is empty: list at least one host as {{name, address}} under hosts ({where})"
        )
    hosts: list[Host] = []
    for i, item in enumerate(hosts_raw):
        h = _mapping(item, f"hosts[{i}]", where)
        name = str(h.get("name", ""))
        if not _HOSTNAME.match(name):
            raise ConfigError(
                f"hosts[{i}].name {name!r} is not a valid hostname: use lowercase letters, "
                f"digits and '-' ({where})"
            )
        addr = _address(h.get("address"), f"hosts[{i}].address", where)
        if addr not in segment or addr in (segment.network_address, segment.broadcast_address):
            raise ConfigError(
                f"hosts[{i}].address {addr} is not a usable address of lab.segment {segment}: "
                f"pick one inside it ({where})"
            )
        hosts.append(Host(name, str(addr)))
    _unique([h.name for h in hosts], "host name", "hosts[].name", where)
    _unique([h.address for h in hosts], "host address", "hosts[].address", where)
    return hosts


def _lab_bridge(
    lab: Mapping[str, Any],
    lab_id: str,
    transport: str,
    segment: ipaddress.IPv4Network,
    hosts: list[Host],
    where: str,
) -> dict[str, Any]:
    bridge_address = _address(
        lab.get("bridgeAddress", str(next(segment.hosts()))), "lab.bridgeAddress", where
    )
    if bridge_address not in segment:
        raise ConfigError(
            f"lab.bridgeAddress {bridge_address} is outside lab.segment {segment}: the lab's "
            f"bridge needs an address in the hosts' segment ({where})"
        )
    if str(bridge_address) in {h.address for h in hosts}:
        raise ConfigError(
            f"lab.bridgeAddress {bridge_address} is also a host's address: give the bridge "
            f"its own address ({where})"
        )
    # On real hosts there is no lab bridge unless one is named (the tests' VM hosts have one).
    bridge_raw = lab.get("bridge", f"ovbr-{lab_id}" if transport == "local" else None)
    bridge = None if bridge_raw is None else str(bridge_raw)
    if bridge is not None and (
        len(bridge) > _IFNAME_MAX or not re.match(r"^[a-zA-Z0-9_.-]+$", bridge)
    ):
        raise ConfigError(
            f"lab.bridge {bridge!r} is not a valid interface name (at most 15 letters, digits, "
            f"'-', '_' or '.') ({where})"
        )
    state_dir = str(lab.get("stateDir", "/var/lib/overlaylab"))
    if not state_dir.startswith("/") or len(state_dir) > 40:
        raise ConfigError(
            f"lab.stateDir {state_dir!r} must be an absolute path of at most 40 characters "
            f"(sockets below it have a 108-byte limit) ({where})"
        )
    return {
        "bridge": bridge,
        "bridge_address": str(bridge_address),
        "state_dir": state_dir.rstrip("/"),
    }


def _etcd(etcd: Mapping[str, Any], where: str) -> dict[str, Any]:
    token = str(etcd.get("clusterToken", "etcd-cluster"))
    client_port = _port(etcd.get("clientPort", 2379), "etcd.clientPort", where)
    peer_port = _port(etcd.get("peerPort", 2380), "etcd.peerPort", where)
    if client_port == peer_port:
        raise ConfigError(f"etcd.clientPort and etcd.peerPort are both {client_port} ({where})")
    return {"etcd_token": token, "etcd_client_port": client_port, "etcd_peer_port": peer_port}


def _docker(docker: Mapping[str, Any], etcd: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The daemons' side of the store: their advertise port, TLS to etcd, which members."""
    advertise_port = _port(docker.get("advertisePort", 2375), "docker.advertisePort", where)
    etcd_tls = etcd.get("tls", False)
    if not isinstance(etcd_tls, bool):
        raise ConfigError(f"etcd.tls must be true or false, got {etcd_tls!r} ({where})")
    store_endpoints = str(docker.get("storeEndpoints", "own"))
    if store_endpoints not in ("own", "all"):
        raise ConfigError(
            f"docker.storeEndpoints {store_endpoints!r} must be 'own' (each daemon uses its "
            f"host's member, as in the seed) or 'all' (every member, for HA) ({where})"
        )
    return {
        "advertise_port": advertise_port,
        "etcd_tls": etcd_tls,
        "store_all": store_endpoints == "all",
    }


def _overlay(
    network: Mapping[str, Any], segment: ipaddress.IPv4Network, where: str
) -> dict[str, Any]:
    net_name = str(network.get("name", "demo"))
    if not _CONTAINER.match(net_name):
        raise ConfigError(f"network.name {net_name!r} is not a valid Docker network name ({where})")
    subnet = _network(network.get("subnet", "10.0.0.0/24"), "network.subnet", where)
    if subnet.prefixlen > 29:
        raise ConfigError(
            f"network.subnet {subnet} is too small for a gateway and containers: use /29 or "
            f"larger ({where})"
        )
    if subnet.overlaps(segment):
        raise ConfigError(
            f"network.subnet {subnet} overlaps the hosts' segment lab.segment {segment}: "
            f"the overlay must use its own range ({where})"
        )
    gateway = _address(network.get("gateway", str(next(subnet.hosts()))), "network.gateway", where)
    if gateway not in subnet or gateway in (subnet.network_address, subnet.broadcast_address):
        raise ConfigError(
            f"network.gateway {gateway} is outside network.subnet {subnet}: pick a usable "
            f"address inside it, e.g. {next(subnet.hosts())} ({where})"
        )
    mtu_raw = network.get("mtu")
    mtu: int | None = None
    if mtu_raw is not None:
        mtu = _int(mtu_raw, "network.mtu", where)
        if not 576 <= mtu <= 9000:
            raise ConfigError(f"network.mtu {mtu} must be between 576 and 9000 ({where})")
    return {"network_name": net_name, "subnet": subnet, "gateway": str(gateway), "mtu": mtu}


def _containers(items: Any, hosts: list[Host], where: str) -> list[Container]:
    containers: list[Container] = []
    for i, item in enumerate(items):
        c = _mapping(item, f"containers[{i}]", where)
        name = str(c.get("name", ""))
        if not _CONTAINER.match(name):
            raise ConfigError(f"containers[{i}].name {name!r} is not a valid name ({where})")
        on = str(c.get("host", ""))
        if on not in {h.name for h in hosts}:
            raise ConfigError(
                f"containers[{i}] {name!r} is placed on unknown host {on!r}: use one of "
                f"{', '.join(h.name for h in hosts)} ({where})"
            )
        containers.append(Container(name, on))
    _unique(
        [c.name for c in containers],
        "container name",
        "containers[].name (a name is unique across the whole overlay)",
        where,
    )
    return containers


def _image(image: Mapping[str, Any], where: str) -> dict[str, Any]:
    image_name = str(image.get("name", "busybox:latest"))
    image_source = str(image.get("source", "import"))
    if image_source not in ("import", "pull"):
        raise ConfigError(f"image.source {image_source!r} must be 'import' or 'pull' ({where})")
    return {"image": image_name, "image_source": image_source}


def _warnings(hosts: list[Host]) -> list[str]:
    if len(hosts) == 2:
        return [
            "a 2-member etcd cluster tolerates no member failure (quorum is 2 of 2); "
            "use 3 hosts to tolerate one"
        ]
    if len(hosts) % 2 == 0:
        return [
            f"an etcd cluster of {len(hosts)} members tolerates no more failures than one of "
            f"{len(hosts) - 1}"
        ]
    return []


def _mapping(value: Any, what: str, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a mapping, got {type(value).__name__} ({where})")
    return value


def _network(value: Any, what: str, where: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(str(value), strict=True)
    except ValueError as e:
        raise ConfigError(
            f"{what} {value!r} is not a valid IPv4 CIDR ({e}): write it like 10.0.0.0/24 ({where})"
        ) from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise ConfigError(f"{what} {value!r} must be IPv4 ({where})")
    return net


def _address(value: Any, what: str, where: str) -> ipaddress.IPv4Address:
    try:
        addr = ipaddress.ip_address(str(value))
    except ValueError:
        raise ConfigError(
            f"{what} {value!r} is not a valid IPv4 address: write it like 192.168.205.10 ({where})"
        ) from None
    if not isinstance(addr, ipaddress.IPv4Address):
        raise ConfigError(f"{what} {value!r} must be IPv4 ({where})")
    return addr


def _int(value: Any, what: str, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} {value!r} is not a number ({where})") from None


def _port(value: Any, what: str, where: str) -> int:
    port = _int(value, what, where)
    if not 1 <= port <= 65535:
        raise ConfigError(f"{what} {port} is not a TCP port (1-65535) ({where})")
    return port


def _unique(values: list[str], what: str, key: str, where: str) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise ConfigError(f"duplicate {what} {v!r}: make each {key} unique ({where})")
        seen.add(v)
