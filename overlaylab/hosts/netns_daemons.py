"""etcd and dockerd as plain processes inside a host's network namespace on this machine.

Each is entered with ``nsenter --net=`` (not ``ip netns exec``, which remounts /sys and hides
the cgroup mounts dockerd needs). A host's state lives in its ``host_dir``: pid files, logs,
etcd's data, dockerd's data-root and exec-root; teardown removes all of it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path

from overlaylab import verbs
from overlaylab.defaults import LOCAL_ETCD_TIMING
from overlaylab.errors import DockerError, EtcdError, LabError
from overlaylab.etcd import EtcdClient
from overlaylab.hosts import member, serf
from overlaylab.hosts.dockerd import (
    SERF_PORT,
    clear_stale_endpoints,
    node_key,
    serf_listening,
)
from overlaylab.hosts.engineapi import EngineAPI
from overlaylab.hosts.pki import client_tls, docker_tls_flags, etcd_tls_flags
from overlaylab.hosts.proc import (
    alive,
    cmdline,
    kill,
    log,
    log_error,
    log_tail,
    pid_of,
    remove_if_empty,
    run,
    spawn,
    stop,
    tcp_open,
    wait_for,
)
from overlaylab.hosts.versions import check_docker_version
from overlaylab.netrule import RouteGuard


def nsenter(netns: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{netns}", "--"]


# --- etcd ------------------------------------------------------------------------------------


def etcd_argv(
    *,
    name: str,
    data: Path,
    client: str,
    peer: str,
    loopback: str,
    token: str,
    initial_cluster: str,
    tls_dir: str | None,
    state: str = "new",
    timing: tuple[int, int] = LOCAL_ETCD_TIMING,
) -> list[str]:
    return [
        "etcd",
        *("--name", name, "--data-dir", str(data)),
        *("--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer),
        *("--listen-client-urls", f"{client},{loopback}", "--advertise-client-urls", client),
        *("--initial-cluster-token", token, "--initial-cluster", initial_cluster),
        *("--initial-cluster-state", state, "--enable-v2=true"),
        *("--heartbeat-interval", str(timing[0]), "--election-timeout", str(timing[1])),
        *etcd_tls_flags(tls_dir, name),
    ]


#: What etcd logs once its peer port serves (etcd 3.4's capnslog and 3.5's zap, from
#: ``servePeers``: v3.4.23 embed/etcd.go:592 and :586, v3.5.19 server/embed/etcd.go:634).
PEERS_SERVED = ("embed: listening for peers on ", '"msg":"serving peer traffic"')
#: How long a member's door stays shut at most, waiting for that line.
ETCD_DOOR_LIMIT = 10.0


class NamespaceEtcd:
    """The member as a process in the namespace ``netns``, its files in ``host_dir``
    (``member.EtcdSeat``); ``bridge``: the route guard for what this machine sends to etcd.

    A member starts behind its door: its client and peer ports refuse, with a reset, whatever
    does not come from its own namespace, until its log says that its peer port serves. A
    founding member asks each peer whether it was bootstrapped already, with a 1 s timeout
    (v3.4.23 etcdserver/server.go:394, cluster_util.go:37-51, config.go:315-320), before it
    serves its own peer port (embed/etcd.go:122, :217, :236). Members started together all
    listen and none serves: each asks and waits the whole second, the whole of a 2-host up's
    health gate. A peer behind its door refuses at once instead: not bootstrapped, go on."""

    listen_timeout = 30.0
    clean_failed_start = True

    def __init__(
        self, *, netns: str | None, host_dir: str, bridge: str | None, tls_dir: str | None
    ) -> None:
        self.netns, self.base, self.tls_dir = netns, Path(host_dir), tls_dir
        self.guard = RouteGuard(bridge) if bridge else None
        self.data, self.marker = self.base / "etcd", self.base / "etcd-cluster.json"
        self.pidfile, self.logfile = self.base / "etcd.pid", self.base / "etcd.log"
        self.tls = bool(tls_dir)
        self._ctx = client_tls(tls_dir)
        self._started: tuple[int, list[str], member.Start] | None = None
        self._door: tuple[int, float] | None = None  # shut: (log offset, monotonic deadline)

    def prepare(self) -> None:
        pass

    def start(self, start: member.Start) -> str:
        pid = pid_of(self.pidfile, "etcd")
        argv: list[str] = []
        if self.netns is not None:
            # a door left shut by a run killed while this member started (none: a no-op)
            open_door(self.netns, ETCD_DOOR)
        if pid is None:
            if self.netns is None:
                raise LabError("etcd-up on a local namespace host needs --netns")
            log_from = 0
            with contextlib.suppress(FileNotFoundError):
                log_from = self.logfile.stat().st_size
            ports = f"{start.member.client_port},{start.member.peer_port}"
            match = ["!", "-i", "lo", "-p", "tcp", "-m", "multiport", "--dports", ports]
            _shut_door(self.netns, ETCD_DOOR, match)
            self._door = (log_from, time.monotonic() + ETCD_DOOR_LIMIT)
            argv = nsenter(self.netns) + etcd_argv(
                name=start.member.name,
                data=self.data,
                client=start.client,
                peer=start.peer,
                loopback=start.loopback,
                token=start.member.token,
                initial_cluster=start.initial_cluster,
                tls_dir=self.tls_dir,
                state=start.state,
                timing=start.member.timing or LOCAL_ETCD_TIMING,
            )
            pid = spawn(argv, self.logfile)
            self.pidfile.write_text(str(pid))
            how = f"started (pid {pid})"
        else:
            how = f"already running (pid {pid})"
        self._started = (pid, argv, start)
        return f"{how} on {start.client}"

    def listening(self) -> bool:
        assert self._started is not None, "listening() before start()"
        pid, argv, start = self._started
        m = start.member
        if not alive(pid):
            raise EtcdError(f"etcd {m.name} exited at start: {log_error(self.logfile)}", argv)
        if self._door is not None:
            log_from, deadline = self._door
            served = any(x in _log_since(self.logfile, log_from) for x in PEERS_SERVED)
            if not served and time.monotonic() < deadline:
                return False
            assert self.netns is not None
            open_door(self.netns, ETCD_DOOR)
            self._door = None
            if served:
                log(f"etcd {m.name}: its peer port serves; door open")
            else:
                log(f"etcd {m.name}: its door opened after {ETCD_DOOR_LIMIT:.0f}s, its log"
                    " never said that its peer port serves")  # fmt: skip
        return tcp_open(m.address, m.client_port, self.guard)

    def client_for(self, url: str) -> EtcdClient:
        return EtcdClient(url, self.guard, timeout=2, tls=self._ctx)

    def own(self, client_url: str) -> EtcdClient:
        return self.client_for(client_url)

    def ours(self) -> bool:
        return True  # every file below host_dir is this lab's

    def stop(self, name: str) -> None:
        if self.netns is not None:
            open_door(self.netns, ETCD_DOOR)
        self._door = None
        pid = pid_of(self.pidfile, "etcd")
        if pid is not None:
            # Its data is deleted next, so a graceful stop buys nothing: it has left the
            # cluster (member remove), or every other member is leaving too (a destroy), or
            # its removal failed and a stop changes nothing of the membership. And on SIGTERM
            # a leader whose peers are going spends seconds handing over leadership (etcd
            # v3.4.23 etcdserver/server.go:1546-1555, Stop, and :1491-1528): in an 8-host
            # destroy, the one member that waited out a 1 s grace was the members' layer's end.
            kill(pid, signal.SIGKILL)
            wait_for(f"etcd {name} (pid {pid}) to exit", lambda: not alive(pid), 10, 0.02)

    def remove(self) -> str:
        for f in (self.pidfile, self.logfile):
            f.unlink(missing_ok=True)
        remove_if_empty(self.base)
        return "its pid file and log too"


def etcd_up(
    *,
    netns: str,
    name: str,
    address: str,
    client_port: int,
    peer_port: int,
    token: str,
    initial_cluster: str,
    host_dir: str,
    bridge: str,
    tls_dir: str | None = None,
) -> None:
    """``member.member_up`` on a namespace host, by keyword (as tests/lab call it)."""
    m = member.Member(
        name=name,
        address=address,
        client_port=client_port,
        peer_port=peer_port,
        token=token,
        initial_cluster=initial_cluster,
    )
    seat = NamespaceEtcd(netns=netns, host_dir=host_dir, bridge=bridge, tls_dir=tls_dir)
    member.member_up(seat, m)


# --- dockerd ---------------------------------------------------------------------------------


def cgroup_parent(lab_id: str, hostname: str) -> str:
    return f"ovl-{lab_id}-{hostname}"


def dockerd_argv(
    *,
    netns: str,
    hostname: str,
    base: Path,
    cluster_store: str,
    advertise: str,
    lab_id: str,
    tls_dir: str | None,
) -> list[str]:
    return [
        *nsenter(netns),
        # Each daemon needs its own hostname: with a shared one serf reports
        # "Node name conflicts" and the hosts never see each other.
        *("unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', hostname),
        "dockerd",
        *("--data-root", str(base / "docker"), "--exec-root", str(base / "x")),
        *("--pidfile", str(base / "docker.pid"), "-H", f"unix://{base / 'docker.sock'}"),
        *("--cgroup-parent", cgroup_parent(lab_id, hostname)),
        *("--cluster-store", cluster_store, "--cluster-advertise", advertise),
        *docker_tls_flags(tls_dir),
        # Debug logs its DNS records (addSvcRecords/deleteSvcRecords) and failed reads of the
        # store: the validator quotes them when a name does not resolve (issue 7's flake).
        "--debug",
    ]


def docker_up(
    *,
    netns: str,
    hostname: str,
    host_dir: str,
    cluster_store: str,
    advertise: str,
    etcd_endpoint: str,
    lab_id: str,
    bridge: str,
    timeout: float = 60,
    tls_dir: str | None = None,
    anchor: str | None = None,
) -> None:
    """Start the host's dockerd unless it runs. ``anchor``: the first host's advertise address
    (``ip:port``) when this is not the first host; a daemon started here then starts with its
    serf door shut and is done once its serf joined the anchor's (``serf.join_through_door``),
    so that daemons started together form one serf cluster."""
    check_docker_version(run(["dockerd", "--version"]).stdout)
    base = Path(host_dir)
    pid = pid_of(base / "docker.pid", "dockerd")
    door = False
    log_from = 0
    etcd = EtcdClient(etcd_endpoint, RouteGuard(bridge), tls=client_tls(tls_dir))
    started = pid is None
    if pid is None:
        base.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            log_from = (base / "docker.log").stat().st_size
        argv = dockerd_argv(
            netns=netns,
            hostname=hostname,
            base=base,
            cluster_store=cluster_store,
            advertise=advertise,
            lab_id=lab_id,
            tls_dir=tls_dir,
        )
        # dockerd writes its own pidfile and refuses to start while that names a live process.
        (base / "docker.pid").unlink(missing_ok=True)
        if anchor is not None and anchor != advertise:
            shut_serf_door(netns, anchor.rsplit(":", 1)[0])
            door = True
        pid = spawn(argv, base / "docker.log", tmpdir=base / "tmp")
        log(
            f"dockerd {hostname} started (pid {pid}), cluster-store {cluster_store}, "
            f"advertise {advertise}, socket {base / 'docker.sock'}"
        )
    else:
        log(f"dockerd {hostname} already running (pid {pid})")
        # An up killed while this daemon waited behind its door left the door shut: wait for
        # the join again (its log is this start's: docker_down removes it), then open it.
        door = anchor is not None and bool(serf_door_rules(netns))
    try:
        if started:
            register_ahead(etcd, advertise)
        _wait_joined(pid, netns, hostname, base, etcd, advertise, timeout)
        if door and anchor is not None:
            serf.join_through_door(
                hostname=hostname,
                anchor=anchor,
                etcd=etcd,
                read_log=lambda: _log_since(base / "docker.log", log_from),
                open_door=lambda: open_serf_door(netns),
                timeout=timeout,
            )
    except LabError:
        if door:
            open_serf_door(netns)
        # A failed create leaves nothing behind: no resource is recorded, so no delete runs.
        docker_down(
            hostname=hostname,
            host_dir=host_dir,
            advertise=advertise,
            etcd_endpoint=etcd_endpoint,
            lab_id=lab_id,
            bridge=bridge,
            tls_dir=tls_dir,
        )
        raise
    info = EngineAPI(str(base / "docker.sock"), timeout=10).info()
    log(
        f"dockerd {hostname} joined the cluster store: ID {info.get('ID')}, "
        f"server {info.get('ServerVersion')}"
    )
    docker = ["docker", "-H", f"unix://{base / 'docker.sock'}"]
    clear_stale_endpoints(docker, etcd, advertise.rsplit(":", 1)[0], hostname)
    keeper_up(base, hostname, etcd_endpoint, bridge, tls_dir)


def register_ahead(etcd: EtcdClient, advertise: str) -> None:
    """Write a daemon's node key as the daemon will, before it does (the same key, value and
    TTL). A daemon starts serf only once its store's node list holds its own address
    (libnetwork 3797618 ``controller.go:625-646``, ``drivers/overlay/overlay.go:241-268``), and
    registers that address only at the first tick of a 500 ms ticker after its discovery
    starts (moby v20.10.24 ``daemon/discovery/discovery.go:147-169``): its first read of the
    list comes before that and finds no key, its serf waits for the next. Written ahead, the
    first read finds it. The daemon writes it again at that tick and every heartbeat after
    (20 s, TTL 60 s: ``discovery.go:17-20``); a daemon that never comes up leaves a key that
    expires, and a failed start deletes it (``docker_down``)."""
    etcd.v2_put(node_key(advertise), advertise, ttl=60)


#: The comment on the serf door's rule, so that it is found and removed by its spec.
SERF_DOOR = "overlaylab-serf-door"
#: The comment on an etcd member's door (``NamespaceEtcd``).
ETCD_DOOR = "overlaylab-etcd-door"


def shut_serf_door(netns: str, anchor_ip: str) -> None:
    """Shut this namespace's serf door: TCP 7946 refuses, with a reset, every host but
    ``anchor_ip`` (a serf join is a TCP push-pull: memberlist ``Join``)."""
    _shut_door(netns, SERF_DOOR, ["-p", "tcp", "--dport", str(SERF_PORT), "!", "-s", anchor_ip])


def serf_door_rules(netns: str) -> list[list[str]]:
    """The door's rules in this namespace, as ``iptables -S`` prints them (none: open)."""
    return door_rules(netns, SERF_DOOR)


def open_serf_door(netns: str) -> None:
    """Remove the door's rules (quiet when there are none, or no namespace)."""
    open_door(netns, SERF_DOOR)


def _shut_door(netns: str, comment: str, match: list[str]) -> None:
    """Insert the door's rule (quiet when there is no namespace: then nothing can start in
    it either, and the start that follows says so)."""
    if not Path(f"/run/netns/{netns}").exists():
        return
    rule = ["INPUT", *match, "-m", "comment", "--comment", comment]
    run(
        [
            *nsenter(netns),
            "iptables",
            "-w",
            "-I",
            *rule,
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ]
    )


def door_rules(netns: str, comment: str) -> list[list[str]]:
    """The rules of the door ``comment`` in this namespace, as ``iptables -S`` prints them."""
    out = run([*nsenter(netns), "iptables", "-w", "-S", "INPUT"], check=False).stdout
    return [shlex.split(line) for line in out.splitlines() if comment in line]


def open_door(netns: str, comment: str) -> None:
    """Remove the door's rules (quiet when there are none, or no namespace)."""
    if not Path(f"/run/netns/{netns}").exists():
        return
    for rule in door_rules(netns, comment):
        run([*nsenter(netns), "iptables", "-w", "-D", *rule[1:]], check=False)


def _log_since(path: Path, offset: int) -> str:
    """What a daemon's log holds from ``offset`` on: this start's lines, not an earlier one's."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def keeper_up(
    base: Path, hostname: str, etcd_endpoint: str, bridge: str, tls_dir: str | None
) -> None:
    """The names keeper beside the daemon (``hosts/keeper.py``), unless it runs already."""
    pidfile = base / "keeper.pid"
    pid = pid_of(pidfile, "names-keep")
    if pid is not None:
        log(f"names keeper {hostname} already running (pid {pid})")
        return
    record = verbs.NamesKeep(
        hostname=hostname,
        docker_host=f"unix://{base / 'docker.sock'}",
        etcd_endpoint=etcd_endpoint,
        bridge=bridge,
        tls_dir=tls_dir,
    )
    pid = spawn([sys.executable, "-m", "overlaylab.hostops", *record.argv()], base / "keeper.log")
    pidfile.write_text(f"{pid}\n")
    log(f"names keeper {hostname} started (pid {pid}), log {base / 'keeper.log'}")


def keeper_down(base: Path, hostname: str) -> None:
    pid = pid_of(base / "keeper.pid", "names-keep")
    if pid is not None:
        stop(pid, f"names keeper {hostname}", grace=5)
    for f in ("keeper.pid", "keeper.log"):
        (base / f).unlink(missing_ok=True)


def _wait_joined(
    pid: int,
    netns: str,
    hostname: str,
    base: Path,
    etcd: EtcdClient,
    advertise: str,
    timeout: float,
) -> None:
    """Wait for the daemon to answer, its node key to be in etcd (``register_ahead`` writes
    it for a daemon started here; the daemon itself every heartbeat) and its serf to start,
    which it does only once its own store discovery has listed that key."""
    sock, logfile = base / "docker.sock", base / "docker.log"
    client = EngineAPI(str(sock), timeout=10)

    def ready() -> bool:
        if not alive(pid):
            raise DockerError(f"dockerd {hostname} exited at start: {log_error(logfile)}")
        return client.ping()

    key = node_key(advertise)
    # Polled often: each wait is on the path of every up (a ping, one etcd read, one ``ss``).
    wait_for(f"dockerd {hostname} to answer on {sock}", ready, timeout, 0.05)
    # "Joined the store" is what the overlay needs, not just a running daemon.
    try:
        wait_for(
            f"dockerd {hostname} to register {key} in etcd",
            lambda: etcd.v2_get(key) is not None,
            timeout,
            0.05,
        )
    except LabError:
        raise DockerError(
            f"dockerd {hostname} runs but never registered {key} in etcd at "
            f"{etcd.endpoint}: {log_tail(logfile, 3)}"
        ) from None
    # Registered is not joined: a container started before the daemon's store discovery
    # has seen this host is announced to the others without a VTEP, for good.
    wait_for(f"dockerd {hostname} to start serf", lambda: serf_listening(netns), timeout, 0.05)


def docker_down(
    *,
    hostname: str,
    host_dir: str,
    advertise: str,
    etcd_endpoint: str,
    lab_id: str,
    bridge: str,
    tls_dir: str | None = None,
) -> None:
    base = Path(host_dir)
    keeper_down(base, hostname)
    open_serf_door(f"{lab_id}-{hostname}")
    pid = pid_of(base / "docker.pid", "dockerd")
    if pid is not None:
        # dockerd waits for its containers on SIGTERM: remove them first.
        try:
            client = EngineAPI(str(base / "docker.sock"), timeout=30)
            for c in client.containers(all=True):
                client.remove_container(str(c["Id"]), force=True)
        except (DockerError, KeyError) as e:
            log(f"dockerd {hostname}: could not remove containers through the API: {e}")
        stop(pid, f"dockerd {hostname}", grace=20)
    _kill_cgroup(cgroup_parent(lab_id, hostname))
    _kill_leftovers(base)
    _unmount_below(base)
    for d in ("docker", "x", "tmp"):
        shutil.rmtree(base / d, ignore_errors=True)
    for f in ("docker.sock", "docker.pid", "docker.log"):
        (base / f).unlink(missing_ok=True)
    remove_if_empty(base)
    # If etcd is already gone, its data (and this key) went with it.
    with contextlib.suppress(LabError):
        EtcdClient(etcd_endpoint, RouteGuard(bridge), timeout=1, tls=client_tls(tls_dir)).v2_delete(
            node_key(advertise)
        )
    log(f"dockerd {hostname} stopped, data-root, exec-root and mounts removed")


def _kill_leftovers(base: Path) -> None:
    """A killed containerd or shim may survive its daemon; they name the exec-root or
    data-root."""
    markers = (f"{base}/x/", f"{base}/docker/")
    for p in Path("/proc").iterdir():
        pid = int(p.name) if p.name.isdigit() else os.getpid()
        if pid != os.getpid() and any(m in a for a in cmdline(pid) for m in markers):
            kill(pid, signal.SIGKILL)


def _kill_cgroup(parent: str) -> None:
    root = Path("/sys/fs/cgroup")
    dirs = sorted(root.glob(f"*/{parent}"), key=str)
    for d in dirs:
        for procs in d.rglob("cgroup.procs"):
            for pid in procs.read_text().split():
                kill(int(pid), signal.SIGKILL)
    for d in dirs:
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            _rmdir_retry(sub)
        _rmdir_retry(d)


def _rmdir_retry(d: Path) -> None:
    for _ in range(50):
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)


def _unmount_below(base: Path) -> None:
    prefix = str(base) + "/"
    mounts = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(prefix)
    ]
    for m in sorted(mounts, key=lambda m: -m.count("/")):
        if run(["umount", m], check=False).returncode != 0:
            run(["umount", "-l", m], check=False)
