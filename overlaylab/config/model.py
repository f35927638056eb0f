"""The lab's plain, validated values: what :func:`overlaylab.config.parse` returns.

Nothing here reads config or checks it; every value in a :class:`LabConfig` has passed
:mod:`overlaylab.config.sections` already.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field

from overlaylab.defaults import UNDERLAY_MTU, VXLAN_OVERHEAD
from overlaylab.etcd import etcd_url

#: Config keys, under the project's namespace (``overlay-etcd:<key>``).
#: The Pulumi project's name: the namespace of its config keys.
PROJECT = "overlay-etcd"
KEYS = (
    "lab", "hosts", "etcd", "docker", "network", "networks", "containers", "image", "ssh",
    "validation",
)  # fmt: skip


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
class Network:
    """One overlay network: ``networks[i]`` (or the seed's single ``network`` section)."""

    name: str
    subnet: ipaddress.IPv4Network
    gateway: str
    #: ``mtu`` as written in the stack, or None (derived: see :meth:`LabConfig.mtu_of`).
    mtu: int | None = None
    #: Docker driver options (``com.docker.network.*``) besides the MTU, as written.
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Container:
    name: str
    host: str
    #: The networks it joins, in order (its first interface is on the first); empty means the
    #: lab's first network (a config that names none, as every stack before ``networks``).
    networks: tuple[str, ...] = ()


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
    #: ``etcd.generation``: raised by one, the cluster is rebuilt with everything on it (the
    #: only way a new token or port is accepted on a running stack).
    etcd_generation: int
    advertise_port: int
    network_name: str
    subnet: ipaddress.IPv4Network
    gateway: str
    #: ``network.mtu`` as written in the stack, or None; see :attr:`overlay_mtu`.
    mtu: int | None
    containers: tuple[Container, ...]
    image: str
    image_source: str
    etcd_tls: bool = False
    #: ``etcd.heartbeatMs``/``electionMs``, or None: the transport's own (docs/ha.md).
    etcd_timing: tuple[int, int] | None = None
    store_all: bool = False
    ssh_user: str = "root"
    ssh_port: int = 22
    identity_file: str = "~/.overlaylab/seed/id_ssh"
    #: ``lab.mtu``: the MTU of the hosts' own interfaces on the segment (the underlay).
    underlay_mtu: int = UNDERLAY_MTU
    warnings: tuple[str, ...] = field(default=())
    #: Every overlay network, the first being ``network_name``/``subnet``/``gateway``/``mtu``
    #: above; empty means that one alone (see :attr:`all_networks`).
    networks: tuple[Network, ...] = ()
    #: Whether the stack wrote ``networks:`` (a list) rather than the seed's ``network``.
    networks_listed: bool = False

    #: ``validation.tests``: the ``--test`` patterns of `up`'s validator (none: every test)
    validate_tests: tuple[str, ...] = field(default=())

    @property
    def all_networks(self) -> tuple[Network, ...]:
        """Every overlay network, in the stack's order (the seed's single one if no list)."""
        if self.networks:
            return self.networks
        return (Network(self.network_name, self.subnet, self.gateway, self.mtu),)

    def network(self, name: str) -> Network:
        for n in self.all_networks:
            if n.name == name:
                return n
        raise KeyError(name)

    def networks_of(self, container: Container) -> tuple[str, ...]:
        """The networks ``container`` joins: as written, else the first network."""
        return container.networks or (self.all_networks[0].name,)

    def on_network(self, name: str) -> tuple[Container, ...]:
        """The containers that join network ``name``, in the stack's order."""
        return tuple(c for c in self.containers if name in self.networks_of(c))

    def mtu_of(self, net: Network) -> int:
        """The MTU of the containers' interfaces on ``net``: its ``mtu`` when set, else
        ``underlay_mtu - 50`` (see :attr:`overlay_mtu`)."""
        return net.mtu if net.mtu is not None else self.underlay_mtu - VXLAN_OVERHEAD

    def docker_mtu_option_of(self, net: Network) -> int:
        """Docker's ``com.docker.network.driver.mtu`` for ``net`` (see
        :attr:`docker_mtu_option`)."""
        return self.mtu_of(net) + VXLAN_OVERHEAD

    @property
    def prefixlen(self) -> int:
        return self.segment.prefixlen

    @property
    def overlay_mtu(self) -> int:
        """The MTU of the containers' interfaces on the overlay (``eth0`` in each container).

        ``network.mtu`` when set (parse refuses one above ``underlay_mtu - 50``), else derived:
        ``underlay_mtu - 50``, so a VXLAN frame of a full-size container packet still fits the
        underlay (1500 gives 1450, 9000 gives 8950).
        """
        return self.mtu if self.mtu is not None else self.underlay_mtu - VXLAN_OVERHEAD

    @property
    def docker_mtu_option(self) -> int:
        """The value that gives the containers :attr:`overlay_mtu` through Docker's option.

        ``com.docker.network.driver.mtu`` on an ``overlay`` network is *not* the containers'
        MTU: libnetwork's overlay driver reads it as the MTU its VXLAN packets may use (1500 when
        unset) and gives the vxlan device and every container interface that value minus 50
        (``maxMTU()`` in drivers/overlay). LAB.md saw it here: option 8950, container 8900. So
        the option is ``overlay_mtu + 50``, which is ``underlay_mtu`` when the overlay MTU is
        derived.
        """
        return self.overlay_mtu + VXLAN_OVERHEAD

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
        return etcd_url(host.address, self.etcd_client_port, self.etcd_tls)

    def peer_url(self, host: Host) -> str:
        return etcd_url(host.address, self.etcd_peer_port, self.etcd_tls)

    def initial_cluster(self) -> str:
        return ",".join(f"{h.name}={self.peer_url(h)}" for h in self.hosts)

    def advertise(self, host: Host) -> str:
        return f"{host.address}:{self.advertise_port}"

    def cluster_store(self, host: Host) -> str:
        # As in the seed, each daemon talks to its own host's member; with storeEndpoints
        # 'all' it knows every member, so losing its own member does not cut it off.
        hosts = [host, *(h for h in self.hosts if h != host)] if self.store_all else [host]
        return "etcd://" + ",".join(f"{h.address}:{self.etcd_client_port}" for h in hosts)
