"""Namespace hosts: a lab host as a network namespace on this machine, behind a bridge.

``bridge_up``/``host_up`` and their downs make the bridge and the namespaces (veth ``eth0``
on the bridge); ``NamespaceHost`` runs the verbs inside one namespace, with etcd and dockerd
as processes of this machine (``netns_daemons``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from overlaylab.errors import PreflightError
from overlaylab.etcd import EtcdClient
from overlaylab.hosts import member, netns_daemons, pki, serf
from overlaylab.hosts.base import need
from overlaylab.hosts.image import image_import, image_remove
from overlaylab.hosts.names import names_settle
from overlaylab.hosts.proc import kill, log, run
from overlaylab.hosts.versions import check_docker_version, check_etcd_version, parse_etcd_version
from overlaylab.netrule import RouteGuard

TOOLS = ("ip", "nsenter", "unshare", "dockerd", "etcd", "busybox", "iptables")
NETNS_DIR = "/run/netns"


def preflight() -> None:
    if os.geteuid() != 0:
        raise PreflightError("the local lab needs root (namespaces, bridge, dockerd): run as root")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise PreflightError(
            f"missing tools: {', '.join(missing)}; install Debian's iproute2 util-linux "
            f"docker.io etcd-server busybox-static iptables"
        )
    check_docker_version(run(["dockerd", "--version"]).stdout)
    check_etcd_version(parse_etcd_version(run(["etcd", "--version"]).stdout))
    log("preflight ok: root, tools present, Docker < 23, etcd 3.4/3.5")


# --- bridge and namespaces ---------------------------------------------------------------------


def link_exists(name: str) -> bool:
    return run(["ip", "link", "show", "dev", name], check=False).returncode == 0


def netns_exists(name: str) -> bool:
    return Path(f"{NETNS_DIR}/{name}").exists()


def bridge_up(bridge: str, address: str, prefixlen: int, mtu: int | None = None) -> None:
    if not link_exists(bridge):
        run(["ip", "link", "add", bridge, "type", "bridge"])
    if mtu is not None:
        run(["ip", "link", "set", bridge, "mtu", str(mtu)])
    cidr = f"{address}/{prefixlen}"
    addrs = run(["ip", "-j", "addr", "show", "dev", bridge]).stdout
    if f'"local":"{address}"' not in addrs.replace(" ", ""):
        run(["ip", "addr", "add", cidr, "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])
    log(f"bridge {bridge} up with {cidr}")


def bridge_down(bridge: str) -> None:
    if link_exists(bridge):
        run(["ip", "link", "del", bridge])
    # The lab's last step (its hosts' namespaces went before it): nothing of the lab lists
    # /run/netns any more, so an empty mount its hosts' teardowns could not release goes here.
    _release_netns_dir()
    log(f"bridge {bridge} removed")


def host_up(
    netns: str,
    hostname: str,
    veth: str,
    address: str,
    prefixlen: int,
    bridge: str,
    mtu: int | None = None,
) -> None:
    if not netns_exists(netns):
        run(["ip", "netns", "add", netns])
    ns = ["ip", "-n", netns]
    if not link_exists(veth):
        # The peer is created directly inside the namespace, already named eth0.
        run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
    if mtu is not None:
        # Both ends: the host's eth0 and the bridge port (lab.mtu, the underlay's MTU).
        run(["ip", "link", "set", veth, "mtu", str(mtu)])
        run(["ip", "-n", netns, "link", "set", "eth0", "mtu", str(mtu)])
    run(["ip", "link", "set", veth, "master", bridge])
    run(["ip", "link", "set", veth, "up"])
    run([*ns, "link", "set", "lo", "up"])
    if f'"local":"{address}"' not in run([*ns, "-j", "addr", "show", "dev", "eth0"]).stdout.replace(
        " ", ""
    ):
        run([*ns, "addr", "add", f"{address}/{prefixlen}", "dev", "eth0"])
    run([*ns, "link", "set", "eth0", "up"])
    log(f"host {hostname}: namespace {netns}, eth0 {address}/{prefixlen} on {bridge} via {veth}")


def host_down(netns: str, veth: str) -> None:
    if netns_exists(netns):
        pids = run(["ip", "netns", "pids", netns], check=False).stdout.split()
        for pid in pids:
            kill(int(pid), signal.SIGKILL)
    # Deleting the namespace frees its veth only asynchronously; a new link of the same name
    # would then fail with "File exists". Delete it explicitly.
    if link_exists(veth):
        run(["ip", "link", "del", veth], check=False)
    if netns_exists(netns):
        run(["ip", "netns", "del", netns])
    _release_netns_dir()
    log(f"namespace {netns} and link {veth} removed")


_LIBC = ctypes.CDLL(None, use_errno=True)  # umount2, for its errno (EBUSY: try again)


def _netns_dir_mounted() -> bool:
    with contextlib.suppress(OSError):
        return any(
            line.split()[4] == NETNS_DIR
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
        )
    return False


def _release_netns_dir(wait: float = 2.0) -> None:
    """`ip netns add` bind-mounts /run/netns on itself and never undoes it; once no namespace
    is left (ours were the last) unmount it, as `ip netns add` re-creates it on demand.

    The umount fails with EBUSY while any process has the directory open: the other hosts'
    teardowns list it at the same moment (``os.listdir``, `ip netns`), so a single try leaves
    the empty mount behind now and then (the 8-host soak, 2026-12-03). It is tried again for up
    to ``wait`` seconds while the directory stays empty; never lazily (``umount -l`` would also
    detach a namespace someone else adds meanwhile), so a mount with a namespace in it stays."""
    deadline = time.monotonic() + wait
    while _netns_dir_mounted():
        try:
            if os.listdir(NETNS_DIR):
                return  # someone's namespace: the mount is theirs now
        except OSError:
            return
        if _LIBC.umount2(NETNS_DIR.encode(), 0) == 0:
            return
        err = ctypes.get_errno()
        if err != errno.EBUSY or time.monotonic() >= deadline:
            log(f"{NETNS_DIR} left mounted: umount: {os.strerror(err)}")
            return
        time.sleep(0.005)


# --- the Host ----------------------------------------------------------------------------------


class NamespaceHost:
    """A host that is the network namespace ``netns`` on this machine, its state in
    ``host_dir``, its lab's addresses behind ``bridge``. Each verb needs only some of these:
    one that lacks what it needs says which flags are missing."""

    def __init__(
        self,
        *,
        netns: str | None = None,
        host_dir: str | None = None,
        lab_id: str | None = None,
        bridge: str | None = None,
        tls_dir: str | None = None,
    ) -> None:
        self.netns, self.host_dir, self.lab_id, self.bridge = netns, host_dir, lab_id, bridge
        self.tls_dir = tls_dir

    def preflight(self, *, client_port: int, peer_port: int, address: str | None = None) -> None:
        # Ports: every namespace has its own. MTU: the lab makes its underlay (bridge-up and
        # host-up --mtu), so there is no interface of the host's own to read.
        preflight()

    def pki_install(self, *, name: str) -> None:
        (directory,) = need("pki-install", tls_dir=self.tls_dir)
        pki.pki_install(name=name, directory=directory)

    def pki_remove(self, *, name: str) -> None:
        (directory,) = need("pki-remove", tls_dir=self.tls_dir)
        pki.pki_remove(name=name, directory=directory)

    def etcd_up(self, m: member.Member) -> None:
        netns, host_dir, bridge = need(
            "etcd-up", netns=self.netns, host_dir=self.host_dir, bridge=self.bridge
        )
        seat = netns_daemons.NamespaceEtcd(
            netns=netns, host_dir=host_dir, bridge=bridge, tls_dir=self.tls_dir
        )
        member.member_up(seat, m)

    def serf_mesh(
        self, *, hostname: str, advertise: str, etcd_endpoint: str, peers: list[str], timeout: float
    ) -> None:
        host_dir, bridge = need("serf-mesh", host_dir=self.host_dir, bridge=self.bridge)
        logfile = Path(host_dir) / "docker.log"
        serf.serf_mesh(
            hostname=hostname,
            advertise=advertise,
            peers=peers,
            etcd=EtcdClient(etcd_endpoint, RouteGuard(bridge), tls=pki.client_tls(self.tls_dir)),
            read_log=lambda: logfile.read_text(errors="replace") if logfile.exists() else "",
            timeout=timeout,
        )

    def etcd_down(self, *, name: str) -> None:
        (host_dir,) = need("etcd-down", host_dir=self.host_dir)
        seat = netns_daemons.NamespaceEtcd(
            netns=self.netns, host_dir=host_dir, bridge=self.bridge, tls_dir=self.tls_dir
        )
        member.member_down(seat, name)

    def docker_up(
        self,
        *,
        hostname: str,
        cluster_store: str,
        advertise: str,
        etcd_endpoint: str,
        start_after: Sequence[tuple[str, str]] = (),
    ) -> None:
        netns, host_dir, lab_id, bridge = need(
            "docker-up",
            netns=self.netns,
            host_dir=self.host_dir,
            lab_id=self.lab_id,
            bridge=self.bridge,
        )
        # The daemons start together, each but the first behind its serf door until it has
        # joined the first one's serf (netns_daemons.docker_up): no order to wait for.
        netns_daemons.docker_up(
            netns=netns,
            hostname=hostname,
            host_dir=host_dir,
            cluster_store=cluster_store,
            advertise=advertise,
            etcd_endpoint=etcd_endpoint,
            lab_id=lab_id,
            bridge=bridge,
            tls_dir=self.tls_dir,
            anchor=start_after[0][1] if start_after else None,
        )

    def docker_down(self, *, hostname: str, advertise: str, etcd_endpoint: str) -> None:
        host_dir, lab_id, bridge = need(
            "docker-down", host_dir=self.host_dir, lab_id=self.lab_id, bridge=self.bridge
        )
        netns_daemons.docker_down(
            hostname=hostname,
            host_dir=host_dir,
            advertise=advertise,
            etcd_endpoint=etcd_endpoint,
            lab_id=lab_id,
            bridge=bridge,
            tls_dir=self.tls_dir,
        )

    def image_import(self, *, hostname: str, image: str) -> None:
        (host_dir,) = need("image-import", host_dir=self.host_dir)
        image_import(hostname=hostname, socket_path=docker_socket(host_dir), image=image)

    def image_remove(self, *, hostname: str, image: str) -> None:
        (host_dir,) = need("image-remove", host_dir=self.host_dir)
        image_remove(hostname=hostname, socket_path=docker_socket(host_dir), image=image)

    def names_settle(
        self, *, hostname: str, container: str, names: list[str], network: str, image: str
    ) -> None:
        (host_dir,) = need("names-settle", host_dir=self.host_dir)
        docker = ["docker", "-H", f"unix://{docker_socket(host_dir)}"]
        names_settle(hostname=hostname, docker=docker, container=container, names=names,
                     network=network, image=image)  # fmt: skip


def docker_socket(host_dir: str) -> str:
    return f"{host_dir}/docker.sock"
