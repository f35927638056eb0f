"""etcd and dockerd as plain processes inside a host's network namespace on this machine.

Each is entered with ``nsenter --net=`` (not ``ip netns exec``, which remounts /sys and hides
the cgroup mounts dockerd needs). A host's state lives in its ``host_dir``: pid files, logs,
etcd's data, dockerd's data-root and exec-root; teardown removes all of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from pathlib import Path

from overlaylab import membership
from overlaylab.errors import DockerError, EtcdError, LabError
from overlaylab.etcd import EtcdClient
from overlaylab.hosts.engine import docker_api, node_key, serf_listening
from overlaylab.hosts.etcdcheck import refuse_foreign_data_dir
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
) -> list[str]:
    return [
        "etcd",
        *("--name", name, "--data-dir", str(data)),
        *("--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer),
        *("--listen-client-urls", f"{client},{loopback}", "--advertise-client-urls", client),
        *("--initial-cluster-token", token, "--initial-cluster", initial_cluster),
        *("--initial-cluster-state", state, "--enable-v2=true"),
        *etcd_tls_flags(tls_dir, name),
    ]


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
    guard = RouteGuard(bridge)
    base = Path(host_dir)
    data, marker = base / "etcd", base / "etcd-cluster.json"
    pidfile, logfile = base / "etcd.pid", base / "etcd.log"
    scheme = "https" if tls_dir else "http"
    client = f"{scheme}://{address}:{client_port}"
    peer = f"{scheme}://{address}:{peer_port}"
    identity = {"name": name, "token": token, "client": client}
    refuse_foreign_data_dir(data, marker, identity)
    if pid_of(pidfile, "etcd") is not None:
        log(f"etcd {name} already running")
        return
    # Found the cluster, or join the one that runs (a host added to a running stack).
    start = membership.bootstrap(
        name=name,
        peer_url=peer,
        founding=membership.parse_cluster(initial_cluster),
        client_port=client_port,
        client_for=_client_for(guard, tls_dir),
    )
    base.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(identity))
    argv = nsenter(netns) + etcd_argv(
        name=name,
        data=data,
        client=client,
        peer=peer,
        loopback=f"{scheme}://127.0.0.1:{client_port}",
        token=token,
        initial_cluster=start.initial_cluster,
        tls_dir=tls_dir,
        state=start.state,
    )
    pid = spawn(argv, logfile)
    pidfile.write_text(str(pid))

    def listening() -> bool:
        if not alive(pid):
            raise EtcdError(f"etcd {name} exited at start: {log_error(logfile)}", argv)
        return tcp_open(address, client_port, guard)

    # Static bootstrap: a member cannot be healthy before a quorum has started, so this waits
    # only for the listener; the cluster-wide health gate comes after all members.
    try:
        wait_for(f"etcd {name} to listen on {client}", listening, 30)
    except LabError:
        # A failed create leaves nothing: Pulumi records no resource, so no delete would run,
        # and the data dir left behind would be refused as another cluster's next time.
        client_for = _client_for(guard, tls_dir)
        log(f"etcd {name} did not start: {membership.withdraw(start, peer, client_for)}")
        etcd_down(name=name, host_dir=host_dir)
        raise
    log(f"etcd {name} started (pid {pid}) on {client}, peers {peer}: {start.how}")


def etcd_down(
    *, name: str, host_dir: str, bridge: str | None = None, tls_dir: str | None = None
) -> None:
    base = Path(host_dir)
    pid = pid_of(base / "etcd.pid", "etcd")
    if pid is not None:
        # Leave the cluster while still running, so the others shrink their quorum first.
        log(f"etcd {name}: {_leave(name, base / 'etcd-cluster.json', bridge, tls_dir)}")
        # Its data is deleted next, so a graceful stop buys nothing; and a leader whose peers
        # are already gone spends seconds trying to hand over leadership before it exits.
        stop(pid, f"etcd {name}", grace=1)
    shutil.rmtree(base / "etcd", ignore_errors=True)
    for f in ("etcd-cluster.json", "etcd.pid", "etcd.log"):
        (base / f).unlink(missing_ok=True)
    remove_if_empty(base)
    log(f"etcd {name} stopped, data removed")


def _client_for(guard: RouteGuard | None, tls_dir: str | None) -> membership.ClientFor:
    ctx = client_tls(tls_dir)
    return lambda url: EtcdClient(url, guard, timeout=2, tls=ctx)


def _leave(name: str, marker: Path, bridge: str | None, tls_dir: str | None) -> str:
    try:
        client = json.loads(marker.read_text())["client"]
    except (OSError, ValueError, KeyError, TypeError):
        return "not removed from the cluster (no client address recorded)"
    guard = RouteGuard(bridge) if bridge else None
    ctx = client_tls(tls_dir)
    return membership.leave(
        name=name,
        own=EtcdClient(client, guard, timeout=2, tls=ctx),
        client_for=lambda url: EtcdClient(url, guard, timeout=2, tls=ctx),
    )


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
) -> None:
    check_docker_version(run(["dockerd", "--version"]).stdout)
    base = Path(host_dir)
    pid = pid_of(base / "docker.pid", "dockerd")
    if pid is None:
        base.mkdir(parents=True, exist_ok=True)
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
        pid = spawn(argv, base / "docker.log", tmpdir=base / "tmp")
        log(
            f"dockerd {hostname} started (pid {pid}), cluster-store {cluster_store}, "
            f"advertise {advertise}, socket {base / 'docker.sock'}"
        )
    else:
        log(f"dockerd {hostname} already running (pid {pid})")
    etcd = EtcdClient(etcd_endpoint, RouteGuard(bridge), tls=client_tls(tls_dir))
    try:
        _wait_joined(pid, netns, hostname, base, etcd, advertise, timeout)
    except LabError:
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
    info = docker_api(str(base / "docker.sock"), timeout=10).info()
    log(
        f"dockerd {hostname} joined the cluster store: ID {info.get('ID')}, "
        f"server {info.get('ServerVersion')}"
    )


def _wait_joined(
    pid: int,
    netns: str,
    hostname: str,
    base: Path,
    etcd: EtcdClient,
    advertise: str,
    timeout: float,
) -> None:
    """Wait for the daemon to answer, register its node key and start serf."""
    sock, logfile = base / "docker.sock", base / "docker.log"
    client = docker_api(str(sock), timeout=10)

    def ready() -> bool:
        if not alive(pid):
            raise DockerError(f"dockerd {hostname} exited at start: {log_error(logfile)}")
        try:
            return bool(client.ping())
        except Exception:
            return False

    key = node_key(advertise)
    wait_for(f"dockerd {hostname} to answer on {sock}", ready, timeout)
    # "Joined the store" is what the overlay needs, not just a running daemon.
    try:
        wait_for(
            f"dockerd {hostname} to register {key} in etcd",
            lambda: etcd.v2_get(key) is not None,
            timeout,
        )
    except LabError:
        raise DockerError(
            f"dockerd {hostname} runs but never registered {key} in etcd at "
            f"{etcd.endpoint}: {log_tail(logfile, 3)}"
        ) from None
    # Registered is not joined: a container started before the daemon's store discovery
    # has seen this host is announced to the others without a VTEP, for good.
    wait_for(f"dockerd {hostname} to start serf", lambda: serf_listening(netns), timeout)


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
    pid = pid_of(base / "docker.pid", "dockerd")
    if pid is not None:
        # dockerd waits for its containers on SIGTERM: remove them first.
        try:
            client = docker_api(str(base / "docker.sock"), timeout=30)
            for c in client.containers(all=True):
                client.remove_container(c["Id"], force=True)
        except Exception as e:
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
