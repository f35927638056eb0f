"""Parsing a stack's raw config, one function per section.

:func:`parse` reads the sections in this order: lab, ssh, hosts, etcd, docker, network (or
networks), containers, image; a config with several mistakes reports the first one met. A
section that depends on another gets that one's parsed values (hosts need the lab's segment,
the networks need the underlay MTU, containers need the hosts and networks), never its raw
mapping.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from overlaylab.config import values as v
from overlaylab.config.model import KEYS, PROJECT, Container, Host, LabConfig, Network
from overlaylab.defaults import ETCD_CLIENT_PORT, ETCD_PEER_PORT, UNDERLAY_MTU, VXLAN_OVERHEAD
from overlaylab.errors import ConfigError

#: The underlay MTUs ``lab.mtu`` accepts: IPv6's minimum link MTU up to common jumbo frames.
UNDERLAY_MTU_RANGE = (1280, 9000)


@dataclass(frozen=True)
class _Lab:
    lab_id: str
    transport: str
    segment: ipaddress.IPv4Network
    bridge: str | None
    bridge_address: str
    state_dir: str
    underlay_mtu: int


@dataclass(frozen=True)
class _Ssh:
    user: str
    port: int
    identity_file: str


@dataclass(frozen=True)
class _Etcd:
    token: str
    client_port: int
    peer_port: int
    tls: bool
    generation: int
    timing: tuple[int, int] | None  # (heartbeat, election) in ms, or the transport's own


@dataclass(frozen=True)
class _Docker:
    advertise_port: int
    store_all: bool


def parse(raw: Mapping[str, Any], stack_file: str = "the stack file") -> LabConfig:
    """Validate a stack's raw config (keys of :data:`KEYS`) and return the lab's plain values."""
    where = f"in {stack_file}"
    v.known(raw, (*KEYS, "sshPrivateKey"), f"{PROJECT}:", where, noun="a key of this project")
    section = {
        key: v.mapping(raw.get(key) or {}, key, where)
        for key in ("lab", "etcd", "docker", "network", "image", "validation")
    }
    lab = _parse_lab(section["lab"], where)
    ssh = _parse_ssh(raw, lab, where)
    hosts = _parse_hosts(raw.get("hosts"), lab, where)
    etcd = _parse_etcd(section["etcd"], where)
    docker = _parse_docker(section["docker"], where)
    nets = _parse_networks(raw, section["network"], lab, where)
    net = nets[0]
    containers = _parse_containers(raw.get("containers"), hosts, nets, where)
    image_name, image_source = _parse_image(section["image"], where)
    validate_tests = _parse_validation(section["validation"], where)
    return LabConfig(
        lab_id=lab.lab_id,
        transport=lab.transport,
        segment=lab.segment,
        bridge=lab.bridge,
        bridge_address=lab.bridge_address,
        state_dir=lab.state_dir,
        hosts=hosts,
        etcd_token=etcd.token,
        etcd_client_port=etcd.client_port,
        etcd_peer_port=etcd.peer_port,
        etcd_generation=etcd.generation,
        etcd_timing=etcd.timing,
        advertise_port=docker.advertise_port,
        network_name=net.name,
        subnet=net.subnet,
        gateway=net.gateway,
        mtu=net.mtu,
        containers=containers,
        image=image_name,
        image_source=image_source,
        etcd_tls=etcd.tls,
        store_all=docker.store_all,
        ssh_user=ssh.user,
        ssh_port=ssh.port,
        identity_file=ssh.identity_file,
        underlay_mtu=lab.underlay_mtu,
        warnings=_quorum_warnings(len(hosts)),
        networks=nets,
        networks_listed=raw.get("networks") is not None,
        validate_tests=validate_tests,
    )


def _parse_lab(lab: Mapping[str, Any], where: str) -> _Lab:
    v.known(
        lab, ("id", "transport", "segment", "bridge", "bridgeAddress", "stateDir", "mtu"), "lab.",
        where,
    )  # fmt: skip
    lab_id = str(lab.get("id", "seed"))
    if not v.LAB_ID.match(lab_id):
        raise ConfigError(
            f"lab.id {lab_id!r} is invalid: use 1-16 lowercase letters, digits or '-' ({where})"
        )
    transport = str(lab.get("transport", "local"))
    if transport not in ("local", "ssh"):
        raise ConfigError(
            f"lab.transport {transport!r} is not supported: use 'local' or 'ssh' ({where})"
        )
    segment = v.network(lab.get("segment", "192.168.205.0/24"), "lab.segment", where)
    bridge_address = v.address(
        lab.get("bridgeAddress", str(next(segment.hosts()))), "lab.bridgeAddress", where
    )
    if bridge_address not in segment:
        raise ConfigError(
            f"lab.bridgeAddress {bridge_address} is outside lab.segment {segment}: the lab's "
            f"bridge needs an address in the hosts' segment ({where})"
        )
    # On real hosts there is no lab bridge unless one is named (the tests' VM hosts have one).
    bridge_raw = lab.get("bridge", f"ovbr-{lab_id}" if transport == "local" else None)
    bridge = None if bridge_raw is None else str(bridge_raw)
    if bridge is not None and (len(bridge) > v.IFNAME_MAX or not v.IFNAME.match(bridge)):
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
    return _Lab(
        lab_id=lab_id,
        transport=transport,
        segment=segment,
        bridge=bridge,
        bridge_address=str(bridge_address),
        state_dir=state_dir.rstrip("/"),
        underlay_mtu=_parse_underlay_mtu(lab, where),
    )


def _parse_underlay_mtu(lab: Mapping[str, Any], where: str) -> int:
    mtu = v.integer(lab.get("mtu", UNDERLAY_MTU), "lab.mtu", where)
    low, high = UNDERLAY_MTU_RANGE
    if not low <= mtu <= high:
        raise ConfigError(
            f"lab.mtu {mtu} is outside {low}-{high}: set the MTU of the hosts' interfaces on "
            f"the segment, e.g. 1500 or 9000 ({where})"
        )
    return mtu


def _parse_ssh(raw: Mapping[str, Any], lab: _Lab, where: str) -> _Ssh:
    ssh = v.mapping(raw.get("ssh") or {}, "ssh", where)
    v.known(ssh, ("user", "port", "identityFile"), "ssh.", where)
    user = str(ssh.get("user", "root"))
    if not v.USER.match(user):
        raise ConfigError(f"ssh.user {user!r} is not a valid user name ({where})")
    port = v.port(ssh.get("port", 22), "ssh.port", where)
    identity_file = str(ssh.get("identityFile", f"~/.overlaylab/{lab.lab_id}/id_ssh"))
    if lab.transport == "ssh":
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
    return _Ssh(user, port, identity_file)


def _parse_hosts(hosts_raw: Any, lab: _Lab, where: str) -> tuple[Host, ...]:
    if not isinstance(hosts_raw, Sequence) or isinstance(hosts_raw, str) or not hosts_raw:
        raise ConfigError(
            f"hosts is empty: list at least one host as {{name, address}} under hosts ({where})"
        )
    segment = lab.segment
    hosts: list[Host] = []
    for i, item in enumerate(hosts_raw):
        h = v.mapping(item, f"hosts[{i}]", where)
        v.known(h, ("name", "address"), f"hosts[{i}].", where)
        name = str(h.get("name", ""))
        if not v.HOSTNAME.match(name):
            raise ConfigError(
                f"hosts[{i}].name {name!r} is not a valid hostname: use lowercase letters, "
                f"digits and '-' ({where})"
            )
        addr = v.address(h.get("address"), f"hosts[{i}].address", where)
        if addr not in segment or addr in (segment.network_address, segment.broadcast_address):
            raise ConfigError(
                f"hosts[{i}].address {addr} is not a usable address of lab.segment {segment}: "
                f"pick one inside it ({where})"
            )
        hosts.append(Host(name, str(addr)))
    v.unique([h.name for h in hosts], "host name", "hosts[].name", where)
    v.unique([h.address for h in hosts], "host address", "hosts[].address", where)
    if lab.bridge_address in {h.address for h in hosts}:
        raise ConfigError(
            f"lab.bridgeAddress {lab.bridge_address} is also a host's address: give the bridge "
            f"its own address ({where})"
        )
    return tuple(hosts)


_ETCD_KEYS = (
    "clusterToken",
    "clientPort",
    "peerPort",
    "tls",
    "generation",
    "heartbeatMs",
    "electionMs",
)


def _parse_etcd(etcd: Mapping[str, Any], where: str) -> _Etcd:
    # For `generation` a misspelt key would be a rebuild refused for a reason the user cannot see.
    v.known(etcd, _ETCD_KEYS, "etcd.", where)
    token = str(etcd.get("clusterToken", "etcd-cluster"))
    client_port = v.port(etcd.get("clientPort", ETCD_CLIENT_PORT), "etcd.clientPort", where)
    peer_port = v.port(etcd.get("peerPort", ETCD_PEER_PORT), "etcd.peerPort", where)
    if client_port == peer_port:
        raise ConfigError(f"etcd.clientPort and etcd.peerPort are both {client_port} ({where})")
    tls = etcd.get("tls", False)
    if not isinstance(tls, bool):
        raise ConfigError(f"etcd.tls must be true or false, got {tls!r} ({where})")
    generation = etcd.get("generation", 1)
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 1:
        raise ConfigError(
            f"etcd.generation must be a whole number from 1 (raise it by one to rebuild the "
            f"cluster and everything on it), got {generation!r} ({where})"
        )
    return _Etcd(token, client_port, peer_port, tls, generation, _parse_timing(etcd, where))


def _parse_timing(etcd: Mapping[str, Any], where: str) -> tuple[int, int] | None:
    """etcd.heartbeatMs and etcd.electionMs, both or neither (etcd's own rules: the election
    timeout at least 5 heartbeats and at most 50 s; its tuning guide: the heartbeat near the
    members' round trip, the election timeout about 10 times it)."""
    given = [k for k in ("heartbeatMs", "electionMs") if k in etcd]
    if not given:
        return None
    if len(given) == 1:
        other = "electionMs" if given[0] == "heartbeatMs" else "heartbeatMs"
        raise ConfigError(
            f"etcd.{given[0]} is set but etcd.{other} is not: set both, or neither for the "
            f"transport's own ({where})"
        )
    heartbeat = v.integer(etcd["heartbeatMs"], "etcd.heartbeatMs", where)
    election = v.integer(etcd["electionMs"], "etcd.electionMs", where)
    if heartbeat < 1:
        raise ConfigError(f"etcd.heartbeatMs must be 1 or more, got {heartbeat} ({where})")
    if not 5 * heartbeat <= election <= 50000:
        raise ConfigError(
            f"etcd.electionMs {election} must be from 5 times etcd.heartbeatMs "
            f"({5 * heartbeat}) to 50000, as etcd requires ({where})"
        )
    return heartbeat, election


def _parse_docker(docker: Mapping[str, Any], where: str) -> _Docker:
    v.known(docker, ("advertisePort", "storeEndpoints"), "docker.", where)
    advertise_port = v.port(docker.get("advertisePort", 2375), "docker.advertisePort", where)
    store_endpoints = str(docker.get("storeEndpoints", "own"))
    if store_endpoints not in ("own", "all"):
        raise ConfigError(
            f"docker.storeEndpoints {store_endpoints!r} must be 'own' (each daemon uses its "
            f"host's member, as in the seed) or 'all' (every member, for HA) ({where})"
        )
    return _Docker(advertise_port, store_all=store_endpoints == "all")


#: What each of ``networks`` accepts; the seed's single ``network`` takes no options.
_NETWORK_KEYS = ("name", "subnet", "gateway", "mtu", "options")
#: Docker's MTU option is ``mtu`` (which is the containers' MTU, not Docker's; see LabConfig).
_MTU_OPTION = "com.docker.network.driver.mtu"


def _parse_networks(
    raw: Mapping[str, Any], single: Mapping[str, Any], lab: _Lab, where: str
) -> tuple[Network, ...]:
    """``networks`` (a list), or the seed's ``network`` section (one network, ``demo`` by
    default); not both."""
    listed = raw.get("networks")
    if listed is None:
        return (_parse_network(single, lab, "network.", where, default_name="demo"),)
    if raw.get("network") is not None:
        raise ConfigError(
            f"network and networks are both set: keep one (move the network section into the "
            f"networks list as its first item) ({where})"
        )
    if not isinstance(listed, Sequence) or isinstance(listed, str) or not listed:
        raise ConfigError(
            f"networks must be a non-empty list of {{name, subnet, gateway, mtu, options}} "
            f"({where})"
        )
    nets: list[Network] = []
    for i, item in enumerate(listed):
        m = v.mapping(item, f"networks[{i}]", where)
        if "name" not in m or "subnet" not in m:
            raise ConfigError(
                f"networks[{i}] needs a name and a subnet, e.g. {{name: backend, subnet: "
                f"10.0.1.0/24}} ({where})"
            )
        nets.append(_parse_network(m, lab, f"networks[{i}].", where, default_name=""))
    v.unique([n.name for n in nets], "network name", "networks[].name", where)
    for i, a in enumerate(nets):
        for b in nets[:i]:
            if a.subnet.overlaps(b.subnet):
                raise ConfigError(
                    f"networks[{i}].subnet {a.subnet} ({a.name}) overlaps {b.subnet} of network "
                    f"{b.name}: give each network its own range ({where})"
                )
    return tuple(nets)


def _parse_network(
    network: Mapping[str, Any], lab: _Lab, key: str, where: str, default_name: str
) -> Network:
    v.known(network, _NETWORK_KEYS if key != "network." else _NETWORK_KEYS[:-1], key, where)
    name = str(network.get("name", default_name))
    if not v.CONTAINER.match(name):
        raise ConfigError(f"{key}name {name!r} is not a valid Docker network name ({where})")
    subnet = v.network(network.get("subnet", "10.0.0.0/24"), f"{key}subnet", where)
    if subnet.prefixlen > 29:
        raise ConfigError(
            f"{key}subnet {subnet} is too small for a gateway and containers: use /29 or "
            f"larger ({where})"
        )
    if subnet.overlaps(lab.segment):
        raise ConfigError(
            f"{key}subnet {subnet} overlaps the hosts' segment lab.segment {lab.segment}: "
            f"the overlay must use its own range ({where})"
        )
    gateway = v.address(network.get("gateway", str(next(subnet.hosts()))), f"{key}gateway", where)
    if gateway not in subnet or gateway in (subnet.network_address, subnet.broadcast_address):
        raise ConfigError(
            f"{key}gateway {gateway} is outside {key}subnet {subnet}: pick a usable "
            f"address inside it, e.g. {next(subnet.hosts())} ({where})"
        )
    return Network(
        name,
        subnet,
        str(gateway),
        _parse_overlay_mtu(network, lab, key, where),
        _parse_options(network.get("options"), key, where),
    )


def _parse_options(raw: Any, key: str, where: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    options = v.mapping(raw, f"{key}options", where)
    out: list[tuple[str, str]] = []
    for k, value in options.items():
        if str(k) == _MTU_OPTION:
            raise ConfigError(
                f"{key}options sets {_MTU_OPTION}: set {key}mtu instead (the containers' MTU; "
                f"the program gives Docker the option that yields it) ({where})"
            )
        if not str(k) or isinstance(value, (Mapping, list)):
            raise ConfigError(
                f"{key}options.{k} must be a name with a plain value, e.g. "
                f"com.docker.network.driver.overlay.vxlanid_list: '4100' ({where})"
            )
        out.append((str(k), str(value).lower() if isinstance(value, bool) else str(value)))
    return tuple(sorted(out))


def _parse_overlay_mtu(network: Mapping[str, Any], lab: _Lab, key: str, where: str) -> int | None:
    """``mtu`` if set (None derives it from the underlay: see LabConfig.mtu_of)."""
    if network.get("mtu") is None:
        return None
    mtu = v.integer(network["mtu"], f"{key}mtu", where)
    if not 576 <= mtu <= 9000:
        raise ConfigError(f"{key}mtu {mtu} must be between 576 and 9000 ({where})")
    carried = lab.underlay_mtu - VXLAN_OVERHEAD
    if mtu > carried:
        raise ConfigError(
            f"{key}mtu {mtu} is above what the underlay carries: lab.mtu {lab.underlay_mtu} "
            f"minus VXLAN's {VXLAN_OVERHEAD} bytes is {carried}; lower {key}mtu or raise "
            f"lab.mtu ({where})"
        )
    return mtu


def _parse_containers(
    containers_raw: Any, hosts: tuple[Host, ...], nets: tuple[Network, ...], where: str
) -> tuple[Container, ...]:
    names = {h.name for h in hosts}
    net_names = [n.name for n in nets]
    containers: list[Container] = []
    for i, item in enumerate(containers_raw or []):
        c = v.mapping(item, f"containers[{i}]", where)
        v.known(c, ("name", "host", "networks"), f"containers[{i}].", where)
        name = str(c.get("name", ""))
        if not v.CONTAINER.match(name):
            raise ConfigError(f"containers[{i}].name {name!r} is not a valid name ({where})")
        on = str(c.get("host", ""))
        if on not in names:
            raise ConfigError(
                f"containers[{i}] {name!r} is placed on unknown host {on!r}: use one of "
                f"{', '.join(h.name for h in hosts)} ({where})"
            )
        containers.append(Container(name, on, _container_networks(c, i, name, net_names, where)))
    v.unique(
        [c.name for c in containers],
        "container name",
        "containers[].name (a name is unique across the whole overlay)",
        where,
    )
    return tuple(containers)


def _container_networks(
    c: Mapping[str, Any], i: int, name: str, nets: list[str], where: str
) -> tuple[str, ...]:
    """``containers[i].networks``: names of configured networks, each once (none: the first)."""
    raw = c.get("networks")
    if raw is None:
        return ()
    if isinstance(raw, str) or not isinstance(raw, Sequence) or not raw:
        raise ConfigError(
            f"containers[{i}].networks of {name!r} must be a non-empty list of network names, "
            f"e.g. [{nets[0]}] ({where})"
        )
    joined = tuple(str(n) for n in raw)
    for n in joined:
        if n not in nets:
            raise ConfigError(
                f"containers[{i}] {name!r} joins unknown network {n!r}: use one of "
                f"{', '.join(nets)} ({where})"
            )
    v.unique(list(joined), "network", f"containers[{i}].networks entry", where)
    return joined


def _parse_image(image: Mapping[str, Any], where: str) -> tuple[str, str]:
    v.known(image, ("name", "source"), "image.", where)
    name = str(image.get("name", "busybox:latest"))
    source = str(image.get("source", "import"))
    if source not in ("import", "pull"):
        raise ConfigError(f"image.source {source!r} must be 'import' or 'pull' ({where})")
    return name, source


def _parse_validation(validation: Mapping[str, Any], where: str) -> tuple[str, ...]:
    """``validation.tests``: `up`'s validator's ``--test`` patterns, each checked as the
    validator checks it (a regular expression matching a test; ``!`` excludes)."""
    # Late: the validator's package imports this one.
    from overlaylab.validate.catalogue import SelectionError, select

    v.known(validation, ("tests",), "validation.", where)
    tests = validation.get("tests") or []
    if not isinstance(tests, list) or not all(isinstance(t, str) and t for t in tests):
        raise ConfigError(
            f"validation.tests must be a list of test name patterns, such as [etcd, '!nodes'] "
            f"({where})"
        )
    try:
        select(tests)
    except SelectionError as e:
        raise ConfigError(
            f"validation.tests: {str(e).replace('--test ', '', 1)} ({where})"
        ) from None
    return tuple(tests)


def _quorum_warnings(members: int) -> tuple[str, ...]:
    if members == 2:
        return (
            "a 2-member etcd cluster tolerates no member failure (quorum is 2 of 2); "
            "use 3 hosts to tolerate one",
        )
    if members % 2 == 0:
        return (
            f"an etcd cluster of {members} members tolerates no more failures than one of "
            f"{members - 1}",
        )
    return ()
