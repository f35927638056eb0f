"""Operations on the lab's hosts: the one seam where side effects happen.

Every Pulumi ``Command`` of the program runs ``python -m overlaylab.hostops <verb> ...``, so a
test that runs the program runs exactly this code. On the local transport a "host" is a
network namespace on this machine; each verb enters it with ``nsenter --net=`` (not
``ip netns exec``, which remounts /sys and hides the cgroup mounts dockerd needs). On a real
host the same verbs run there over SSH with ``--systemd`` (see ``systemd_host``).

Every verb is idempotent: "up" on something that is up is a no-op, "down" on something that
is gone is a no-op, so ``pulumi up`` twice and ``destroy`` after a failed ``up`` are harmless.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from overlaylab.errors import (
    DockerError,
    EtcdError,
    HostCommandError,
    LabError,
    PreflightError,
)
from overlaylab.etcd import EtcdClient
from overlaylab.netrule import RouteGuard

DOCKER_MAX_MAJOR = 23  # --cluster-store was removed in Docker 23.0
ETCD_SUPPORTED = ("3.4", "3.5")  # 3.6 removed the v2 API that Docker's libkv speaks
TOOLS = ("ip", "nsenter", "unshare", "dockerd", "etcd", "busybox", "iptables")


def log(msg: str) -> None:
    print(msg, flush=True)


def run(
    argv: Sequence[str],
    check: bool = True,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command; ``env`` is added to this process's environment."""
    proc = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **env} if env else None,
    )
    if check and proc.returncode != 0:
        raise HostCommandError(f"{argv[0]} failed", argv, proc.returncode, proc.stdout, proc.stderr)
    return proc


def wait_for(what: str, probe: Callable[[], bool], timeout: float, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --- preflight -------------------------------------------------------------------------------


def parse_docker_version(text: str) -> tuple[int, int]:
    m = re.search(r"version (\d+)\.(\d+)", text)
    if not m:
        raise PreflightError(f"cannot read Docker's version from {text.strip()!r}")
    return int(m.group(1)), int(m.group(2))


def parse_etcd_version(text: str) -> str:
    m = re.search(r"etcd Version: (\d+\.\d+)\.\d+", text) or re.search(r"^(\d+\.\d+)\.\d+", text)
    if not m:
        raise PreflightError(f"cannot read etcd's version from {text.strip()!r}")
    return m.group(1)


def check_docker_version(text: str) -> None:
    major, minor = parse_docker_version(text)
    if major >= DOCKER_MAX_MAJOR:
        raise PreflightError(
            f"Docker {major}.{minor} has no --cluster-store (removed in 23.0): install Docker "
            f"< 23, e.g. Debian 12's docker.io 20.10 or docker-ce 5:20.10.*"
        )


def check_etcd_version(minor: str) -> None:
    if minor not in ETCD_SUPPORTED:
        raise PreflightError(
            f"etcd {minor} is not supported: Docker's cluster store needs the v2 API, which "
            f"etcd 3.4/3.5 serve with --enable-v2=true and 3.6 removed; install etcd 3.4 or 3.5"
        )


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
    return Path(f"/run/netns/{name}").exists()


def bridge_up(bridge: str, address: str, prefixlen: int) -> None:
    if not link_exists(bridge):
        run(["ip", "link", "add", bridge, "type", "bridge"])
    cidr = f"{address}/{prefixlen}"
    addrs = run(["ip", "-j", "addr", "show", "dev", bridge]).stdout
    if f'"local":"{address}"' not in addrs.replace(" ", ""):
        run(["ip", "addr", "add", cidr, "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])
    log(f"bridge {bridge} up with {cidr}")


def bridge_down(bridge: str) -> None:
    if link_exists(bridge):
        run(["ip", "link", "del", bridge])
    log(f"bridge {bridge} removed")


def host_up(
    netns: str, hostname: str, veth: str, address: str, prefixlen: int, bridge: str
) -> None:
    if not netns_exists(netns):
        run(["ip", "netns", "add", netns])
    ns = ["ip", "-n", netns]
    if not link_exists(veth):
        # The peer is created directly inside the namespace, already named eth0.
        run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
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
            _kill(int(pid), signal.SIGKILL)
    # Deleting the namespace frees its veth only asynchronously; a new link of the same name
    # would then fail with "File exists". Delete it explicitly.
    if link_exists(veth):
        run(["ip", "link", "del", veth], check=False)
    if netns_exists(netns):
        run(["ip", "netns", "del", netns])
    _release_netns_dir()
    log(f"namespace {netns} and link {veth} removed")


NETNS_DIR = "/run/netns"


def _release_netns_dir() -> None:
    """`ip netns add` bind-mounts /run/netns on itself and never undoes it; once no namespace
    is left (ours were the last) unmount it, as `ip netns add` re-creates it on demand."""
    with contextlib.suppress(OSError):
        mounted = any(
            line.split()[4] == NETNS_DIR
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
        )
        if mounted and not os.listdir(NETNS_DIR):
            run(["umount", NETNS_DIR], check=False)


SERF_PORT = 7946


def serf_listening(netns: str | None = None) -> bool:
    """Has dockerd started the overlay's gossip (serf on TCP 7946)? It does so only once its
    store discovery has seen this host, which is when it knows its own advertise address."""
    prefix = ["nsenter", f"--net=/run/netns/{netns}", "--"] if netns else []
    out = run([*prefix, "ss", "-Hltn", "sport", "=", f":{SERF_PORT}"], check=False).stdout
    return bool(out.strip())


# --- processes -------------------------------------------------------------------------------


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _pid_of(pidfile: Path, marker: str) -> int | None:
    """The pid in ``pidfile`` if that process is alive and its command line names ``marker``."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    if _alive(pid) and any(marker in a for a in _cmdline(pid)):
        return pid
    return None


def _stop(pid: int, name: str, grace: float) -> None:
    _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        # etcd may ignore SIGTERM once its peers are gone; dockerd may hang on a dead shim.
        log(f"{name} (pid {pid}) ignored SIGTERM for {grace:.0f}s: killing it")
        _kill(pid, signal.SIGKILL)
        wait_for(f"{name} (pid {pid}) to exit", lambda: not _alive(pid), 10)


def _spawn(argv: Sequence[str], logfile: Path, tmpdir: Path | None = None) -> int:
    logfile.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if tmpdir is not None:
        # containerd dumps goroutine stacks to $TMPDIR when signalled: keep them in the
        # host's own dir, which teardown removes, not in this machine's /tmp.
        tmpdir.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(tmpdir)
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def _log_tail(logfile: Path, lines: int = 5) -> str:
    try:
        return "\n".join(logfile.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _tcp_open(address: str, port: int, guard: RouteGuard) -> bool:
    guard.check(address)
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


# --- TLS (the HA stack) ----------------------------------------------------------------------

CLIENT = "client"  # the certificate dockerd, the health gate and the validator present


def pki_up(*, directory: str, members: Sequence[str]) -> None:
    """A CA, one certificate per member (server and peer, for its IP) and one client cert."""
    if shutil.which("openssl") is None:
        raise PreflightError(
            "openssl is missing (it makes the lab's certificates): install openssl"
        )
    d = Path(os.path.expanduser(directory))
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not (d / "ca.pem").exists():
        run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                str(d / "ca-key.pem"),
                "-out",
                str(d / "ca.pem"),
                "-days",
                "825",
                "-subj",
                "/CN=overlay-etcd lab CA",
            ]
        )
    wanted = [m.split("=", 1) for m in members] + [[CLIENT, ""]]
    for name, ip in wanted:
        if (d / f"{name}.pem").exists():
            continue
        san = f"IP:{ip},IP:127.0.0.1,DNS:{name}" if ip else f"DNS:{name}"
        ext = d / f"{name}.ext"
        ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\n")
        run(
            [
                "openssl",
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                str(d / f"{name}-key.pem"),
                "-out",
                str(d / f"{name}.csr"),
                "-subj",
                f"/CN={name}",
            ]
        )
        run(
            [
                "openssl",
                "x509",
                "-req",
                "-in",
                str(d / f"{name}.csr"),
                "-CA",
                str(d / "ca.pem"),
                "-CAkey",
                str(d / "ca-key.pem"),
                "-CAcreateserial",
                "-days",
                "825",
                "-extfile",
                str(ext),
                "-out",
                str(d / f"{name}.pem"),
            ]
        )
        (d / f"{name}.csr").unlink()
        ext.unlink()
    for key in d.glob("*-key.pem"):
        key.chmod(0o600)
    log(f"pki in {d}: CA, {len(members)} member certificates, a client certificate")


def pki_down(*, directory: str) -> None:
    d = Path(os.path.expanduser(directory))
    shutil.rmtree(d, ignore_errors=True)
    _remove_if_empty(d.parent)
    log(f"pki {d} removed")


def pki_bundle(*, directory: str, member: str) -> None:
    """Print what one host needs (CA, its member pair, the client pair) as base64 tar."""
    d = Path(os.path.expanduser(directory))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in (
            "ca.pem",
            f"{member}.pem",
            f"{member}-key.pem",
            f"{CLIENT}.pem",
            f"{CLIENT}-key.pem",
        ):
            tar.add(d / f, arcname=f)
    print(base64.b64encode(buf.getvalue()).decode(), flush=True)


def etcd_tls_flags(tls_dir: str | None, name: str) -> list[str]:
    if not tls_dir:
        return []
    cert, key, ca = f"{tls_dir}/{name}.pem", f"{tls_dir}/{name}-key.pem", f"{tls_dir}/ca.pem"
    return [
        "--cert-file",
        cert,
        "--key-file",
        key,
        "--trusted-ca-file",
        ca,
        "--client-cert-auth",
        "--peer-cert-file",
        cert,
        "--peer-key-file",
        key,
        "--peer-trusted-ca-file",
        ca,
        "--peer-client-cert-auth",
    ]


def docker_tls_flags(tls_dir: str | None) -> list[str]:
    if not tls_dir:
        return []
    return [
        "--cluster-store-opt",
        f"kv.cacertfile={tls_dir}/ca.pem",
        "--cluster-store-opt",
        f"kv.certfile={tls_dir}/{CLIENT}.pem",
        "--cluster-store-opt",
        f"kv.keyfile={tls_dir}/{CLIENT}-key.pem",
    ]


def client_tls(tls_dir: str | None) -> ssl.SSLContext | None:
    """An SSL context that trusts the lab's CA and presents its client certificate."""
    if not tls_dir:
        return None
    d = os.path.expanduser(tls_dir)
    ctx = ssl.create_default_context(cafile=f"{d}/ca.pem")
    ctx.load_cert_chain(f"{d}/{CLIENT}.pem", f"{d}/{CLIENT}-key.pem")
    return ctx


# --- etcd ------------------------------------------------------------------------------------


def refuse_foreign_data_dir(data: Path, marker: Path, identity: dict[str, str]) -> None:
    """A data dir from another cluster silently rejoins that cluster; members then disagree on
    the cluster id and Docker's discovery hangs with no error. Refuse it up front."""
    if not (data / "member").exists():
        return
    try:
        owner = json.loads(marker.read_text())
    except (OSError, ValueError):
        owner = None
    if owner != identity:
        was = (
            f"token {owner.get('token')!r}, members {owner.get('initialCluster')}"
            if isinstance(owner, dict)
            else "a cluster this project did not create"
        )
        raise EtcdError(
            f"etcd data dir {data} belongs to another cluster ({was}); it would rejoin that "
            f"cluster instead of this one: destroy that stack or remove {data}"
        )


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
    data = base / "etcd"
    marker = base / "etcd-cluster.json"
    pidfile = base / "etcd.pid"
    logfile = base / "etcd.log"
    identity = {"name": name, "token": token, "initialCluster": initial_cluster}
    refuse_foreign_data_dir(data, marker, identity)
    if _pid_of(pidfile, "etcd") is not None:
        log(f"etcd {name} already running")
        return
    base.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(identity))
    scheme = "https" if tls_dir else "http"
    client = f"{scheme}://{address}:{client_port}"
    peer = f"{scheme}://{address}:{peer_port}"
    argv = [
        "nsenter",
        f"--net=/run/netns/{netns}",
        "--",
        "etcd",
        "--name",
        name,
        "--data-dir",
        str(data),
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--listen-client-urls",
        f"{client},{scheme}://127.0.0.1:{client_port}",
        "--advertise-client-urls",
        client,
        "--initial-cluster-token",
        token,
        "--initial-cluster",
        initial_cluster,
        "--initial-cluster-state",
        "new",
        "--enable-v2=true",
        *etcd_tls_flags(tls_dir, name),
    ]
    pid = _spawn(argv, logfile)
    pidfile.write_text(str(pid))

    def listening() -> bool:
        if not _alive(pid):
            raise EtcdError(f"etcd {name} exited at start: {_log_tail(logfile)}", argv)
        return _tcp_open(address, client_port, guard)

    # Static bootstrap: a member cannot be healthy before a quorum has started, so this waits
    # only for the listener; the cluster-wide health gate comes after all members.
    try:
        wait_for(f"etcd {name} to listen on {client}", listening, 30)
    except LabError:
        # A failed create leaves nothing: Pulumi records no resource, so no delete would run,
        # and the data dir left behind would be refused as another cluster's next time.
        etcd_down(name=name, host_dir=host_dir)
        raise
    log(f"etcd {name} started (pid {pid}) on {client}, peers {peer}")


def etcd_down(*, name: str, host_dir: str) -> None:
    base = Path(host_dir)
    pid = _pid_of(base / "etcd.pid", "etcd")
    if pid is not None:
        # Its data is deleted next, so a graceful stop buys nothing; and a leader whose peers
        # are already gone spends seconds trying to hand over leadership before it exits.
        _stop(pid, f"etcd {name}", grace=1)
    shutil.rmtree(base / "etcd", ignore_errors=True)
    for f in ("etcd-cluster.json", "etcd.pid", "etcd.log"):
        (base / f).unlink(missing_ok=True)
    _remove_if_empty(base)
    log(f"etcd {name} stopped, data removed")


def etcd_health(
    *,
    endpoints: Sequence[str],
    names: Sequence[str],
    bridge: str | None,
    timeout: float,
    tls_dir: str | None = None,
) -> None:
    """Gate: all members healthy, in one cluster, with the expected names, v2 on, version ok."""
    guard = RouteGuard(bridge) if bridge else None
    ctx = client_tls(tls_dir)
    clients = [EtcdClient(e, guard, tls=ctx) for e in endpoints]
    last = ["not asked yet"]

    def healthy() -> bool:
        problems: list[str] = []
        cluster_ids: set[str] = set()
        for c in clients:
            try:
                if not c.health():
                    problems.append(f"{c.endpoint} not healthy")
                    continue
                cid, members = c.members()
                cluster_ids.add(cid)
                got = sorted(m.get("name", "") for m in members)
                if got != sorted(names):
                    problems.append(f"{c.endpoint} lists members {got}, expected {sorted(names)}")
            except EtcdError as e:
                problems.append(str(e))
        if not problems and len(cluster_ids) > 1:
            raise EtcdError(
                f"etcd members disagree on the cluster id ({', '.join(sorted(cluster_ids))}): a "
                f"member rejoined an old cluster from a stale data dir; destroy and recreate"
            )
        last[0] = "; ".join(problems)
        return not problems

    try:
        wait_for("all etcd members to be healthy", healthy, timeout, interval=0.3)
    except LabError:
        raise EtcdError(f"etcd cluster not healthy after {timeout:.0f}s: {last[0]}") from None
    for c in clients:
        check_etcd_version(".".join(c.version().split(".")[:2]))
        if not c.v2_enabled():
            raise EtcdError(
                f"etcd at {c.endpoint} does not serve the v2 API that Docker's cluster store "
                f"needs: start it with --enable-v2=true"
            )
    log(f"etcd cluster healthy: {len(clients)} members {', '.join(names)}, v2 API on")


# --- dockerd ---------------------------------------------------------------------------------


def docker_api(socket_path: str, timeout: float = 30) -> Any:
    """A Docker Engine API client on a unix socket (API 1.41 = Docker 20.10; no version probe)."""
    import docker

    return docker.APIClient(base_url=f"unix://{socket_path}", version="1.41", timeout=timeout)


def cgroup_parent(lab_id: str, hostname: str) -> str:
    return f"ovl-{lab_id}-{hostname}"


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
    guard = RouteGuard(bridge)
    base = Path(host_dir)
    sock = base / "docker.sock"
    pidfile = base / "docker.pid"
    logfile = base / "docker.log"
    pid = _pid_of(pidfile, "dockerd")
    if pid is None:
        base.mkdir(parents=True, exist_ok=True)
        argv = [
            "nsenter",
            f"--net=/run/netns/{netns}",
            "--",
            # Each daemon needs its own hostname: with a shared one serf reports
            # "Node name conflicts" and the hosts never see each other.
            "unshare",
            "--uts",
            "--",
            "sh",
            "-c",
            'hostname "$0" && exec "$@"',
            hostname,
            "dockerd",
            "--data-root",
            str(base / "docker"),
            "--exec-root",
            str(base / "x"),
            "--pidfile",
            str(pidfile),
            "-H",
            f"unix://{sock}",
            "--cgroup-parent",
            cgroup_parent(lab_id, hostname),
            "--cluster-store",
            cluster_store,
            "--cluster-advertise",
            advertise,
            *docker_tls_flags(tls_dir),
        ]
        # dockerd writes its own pidfile and refuses to start while that names a live process.
        pidfile.unlink(missing_ok=True)
        pid = _spawn(argv, logfile, tmpdir=base / "tmp")
        log(
            f"dockerd {hostname} started (pid {pid}), cluster-store {cluster_store}, "
            f"advertise {advertise}, socket {sock}"
        )
    else:
        log(f"dockerd {hostname} already running (pid {pid})")
    client = docker_api(str(sock), timeout=10)

    def ready() -> bool:
        if not _alive(pid):
            raise DockerError(f"dockerd {hostname} exited at start: {_log_tail(logfile)}")
        try:
            return bool(client.ping())
        except Exception:
            return False

    etcd = EtcdClient(etcd_endpoint, guard, tls=client_tls(tls_dir))
    key = f"/docker/nodes/{advertise}"
    try:
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
                f"{etcd_endpoint}: {_log_tail(logfile, 3)}"
            ) from None
        # Registered is not joined: a container started before the daemon's store discovery
        # has seen this host is announced to the others without a VTEP, for good.
        wait_for(f"dockerd {hostname} to start serf", lambda: serf_listening(netns), timeout)
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
    info = client.info()
    log(
        f"dockerd {hostname} joined the cluster store: ID {info.get('ID')}, "
        f"server {info.get('ServerVersion')}"
    )


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
    sock = base / "docker.sock"
    pid = _pid_of(base / "docker.pid", "dockerd")
    if pid is not None:
        # dockerd waits for its containers on SIGTERM: remove them first.
        try:
            client = docker_api(str(sock), timeout=30)
            for c in client.containers(all=True):
                client.remove_container(c["Id"], force=True)
        except Exception as e:
            log(f"dockerd {hostname}: could not remove containers through the API: {e}")
        _stop(pid, f"dockerd {hostname}", grace=20)
    _kill_cgroup(cgroup_parent(lab_id, hostname))
    # A killed containerd or shim may survive its daemon; they name the exec-root or data-root.
    markers = (f"{base}/x/", f"{base}/docker/")
    for p in Path("/proc").iterdir():
        pid = int(p.name) if p.name.isdigit() else os.getpid()
        if pid != os.getpid() and any(m in a for a in _cmdline(pid) for m in markers):
            _kill(pid, signal.SIGKILL)
    _unmount_below(base)
    for d in ("docker", "x", "tmp"):
        shutil.rmtree(base / d, ignore_errors=True)
    for f in ("docker.sock", "docker.pid", "docker.log"):
        (base / f).unlink(missing_ok=True)
    _remove_if_empty(base)
    # If etcd is already gone, its data (and this key) went with it.
    with contextlib.suppress(LabError):
        EtcdClient(etcd_endpoint, RouteGuard(bridge), timeout=1, tls=client_tls(tls_dir)).v2_delete(
            f"/docker/nodes/{advertise}"
        )
    log(f"dockerd {hostname} stopped, data-root, exec-root and mounts removed")


def _kill_cgroup(parent: str) -> None:
    root = Path("/sys/fs/cgroup")
    dirs = sorted(root.glob(f"*/{parent}"), key=str)
    for d in dirs:
        for procs in d.rglob("cgroup.procs"):
            for pid in procs.read_text().split():
                _kill(int(pid), signal.SIGKILL)
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


def _remove_if_empty(d: Path) -> None:
    """Remove a host's dir, then its lab's and the state root, as far as they are empty."""
    for p in (d, d.parent, d.parent.parent):
        try:
            p.rmdir()
        except OSError:
            return


# --- image -----------------------------------------------------------------------------------


def busybox_rootfs() -> bytes:
    """A tar of a minimal busybox root: /bin/busybox and a link per applet."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise PreflightError("busybox not found: install Debian's busybox-static")
    applets = run([busybox, "--list"]).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp", "etc"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for a in applets:
            if a == "busybox":
                continue
            info = tarfile.TarInfo(f"bin/{a}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
    return buf.getvalue()


def image_import(*, hostname: str, socket_path: str, image: str) -> None:
    import docker

    client = docker_api(socket_path, timeout=60)
    try:
        client.inspect_image(image)
        log(f"{hostname}: image {image} present")
        return
    except docker.errors.ImageNotFound:
        pass
    repo, _, tag = image.partition(":")
    client.import_image_from_data(busybox_rootfs(), repository=repo, tag=tag or "latest")
    log(f"{hostname}: imported {image} from busybox-static ({client.inspect_image(image)['Id']})")


def image_remove(*, hostname: str, socket_path: str, image: str) -> None:
    import docker

    if not Path(socket_path).exists():
        return
    try:
        docker_api(socket_path, timeout=30).remove_image(image, force=True)
        log(f"{hostname}: removed image {image}")
    except docker.errors.DockerException:
        pass


# --- command line ----------------------------------------------------------------------------


def _placement(p: argparse.ArgumentParser) -> None:
    """Where a verb acts: a namespace host on this machine, or (--systemd) the host it runs on."""
    p.add_argument("--systemd", action="store_true", help="act on this systemd-managed host")
    for a in ("--netns", "--host-dir", "--lab-id", "--bridge", "--tls-dir"):
        p.add_argument(a)


def _local(args: argparse.Namespace, *needed: str) -> dict[str, Any]:
    missing = [n for n in needed if getattr(args, n) is None]
    if missing:
        flags = ", ".join("--" + m.replace("_", "-") for m in missing)
        raise LabError(f"{args.verb} on a local namespace host needs {flags}")
    return {n: getattr(args, n) for n in needed}


def _port(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[-1])


def dispatch(args: argparse.Namespace) -> None:
    """Run one verb, on a local namespace host or (``--systemd``) on this systemd host."""
    from overlaylab import systemd_host as sd  # stdlib only, like this module

    v = args.verb
    if v == "preflight":
        if args.systemd:
            sd.preflight(client_port=args.client_port, peer_port=args.peer_port)
        else:
            preflight()
    elif v == "hosts-unique":
        sd.hosts_unique(args.reports)
    elif v == "pki-up":
        pki_up(directory=args.dir, members=args.member)
    elif v == "pki-down":
        pki_down(directory=args.dir)
    elif v == "pki-bundle":
        pki_bundle(directory=args.dir, member=args.member)
    elif v == "pki-install":
        sd.pki_install(name=args.name, directory=_local(args, "tls_dir")["tls_dir"])
    elif v == "pki-remove":
        sd.pki_remove(name=args.name, directory=_local(args, "tls_dir")["tls_dir"])
    elif v == "ssh-identity":
        ssh_identity(args.file)
    elif v == "ssh-identity-remove":
        ssh_identity_remove(args.file)
    elif v == "wait-store":
        sd.wait_store(args.timeout)
    elif v == "bridge-up":
        bridge_up(args.bridge, args.address, args.prefixlen)
    elif v == "bridge-down":
        bridge_down(args.bridge)
    elif v == "host-up":
        host_up(args.netns, args.hostname, args.veth, args.address, args.prefixlen, args.bridge)
    elif v == "host-down":
        host_down(args.netns, args.veth)
    elif v == "etcd-up":
        common = dict(
            name=args.name,
            address=args.address,
            client_port=args.client_port,
            peer_port=args.peer_port,
            token=args.token,
            initial_cluster=args.initial_cluster,
        )
        if args.systemd:
            sd.etcd_up(**common, tls_dir=args.tls_dir)
        else:
            etcd_up(**common, **_local(args, "netns", "host_dir", "bridge"), tls_dir=args.tls_dir)
    elif v == "etcd-down":
        if args.systemd:
            sd.etcd_down(name=args.name)
        else:
            etcd_down(name=args.name, **_local(args, "host_dir"))
    elif v == "etcd-health":
        etcd_health(
            endpoints=args.endpoint,
            names=args.name,
            bridge=args.bridge,
            timeout=args.timeout,
            tls_dir=args.tls_dir,
        )
    elif v == "docker-up":
        if args.systemd:
            sd.docker_up(
                hostname=args.hostname,
                cluster_store=args.cluster_store,
                advertise=args.advertise,
                client_port=_port(args.etcd_endpoint),
                tls_dir=args.tls_dir,
            )
        else:
            docker_up(
                hostname=args.hostname,
                cluster_store=args.cluster_store,
                advertise=args.advertise,
                etcd_endpoint=args.etcd_endpoint,
                **_local(args, "netns", "host_dir", "lab_id", "bridge"),
                tls_dir=args.tls_dir,
            )
    elif v == "docker-down":
        if args.systemd:
            sd.docker_down(
                hostname=args.hostname,
                advertise=args.advertise,
                client_port=_port(args.etcd_endpoint),
                tls_dir=args.tls_dir,
            )
        else:
            docker_down(
                hostname=args.hostname,
                advertise=args.advertise,
                etcd_endpoint=args.etcd_endpoint,
                **_local(args, "host_dir", "lab_id", "bridge"),
                tls_dir=args.tls_dir,
            )
    elif v in ("image-import", "image-remove"):
        if args.systemd:
            (sd.image_import if v == "image-import" else sd.image_remove)(
                hostname=args.hostname, image=args.image
            )
        else:
            sock = f"{_local(args, 'host_dir')['host_dir']}/docker.sock"
            (image_import if v == "image-import" else image_remove)(
                hostname=args.hostname, socket_path=sock, image=args.image
            )


def ssh_identity(path: str) -> None:
    """Write the SSH key (from OVERLAYLAB_SSH_KEY) to a 0600 file for ssh-based clients."""
    key = os.environ.get("OVERLAYLAB_SSH_KEY", "")
    if "PRIVATE KEY-----" not in key:
        raise LabError("OVERLAYLAB_SSH_KEY holds no private key")
    f = Path(os.path.expanduser(path))
    f.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key if key.endswith("\n") else key + "\n")
    log(f"ssh identity written to {f} (mode 0600)")


def ssh_identity_remove(path: str) -> None:
    f = Path(os.path.expanduser(path))
    f.unlink(missing_ok=True)
    (f.parent / "known_hosts").unlink(missing_ok=True)
    (f.parent / "known_hosts.old").unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        f.parent.rmdir()
        f.parent.parent.rmdir()
    log(f"ssh identity {f} removed")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m overlaylab.hostops", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="verb", required=True)

    pf = sub.add_parser("preflight")
    _placement(pf)
    pf.add_argument("--client-port", type=int, default=2379)
    pf.add_argument("--peer-port", type=int, default=2380)
    sub.add_parser("hosts-unique").add_argument("reports", nargs="+")
    sub.add_parser("ssh-identity").add_argument("--file", required=True)
    k = sub.add_parser("pki-up")
    k.add_argument("--dir", required=True)
    k.add_argument("--member", action="append", required=True, help="NAME=IP")
    sub.add_parser("pki-down").add_argument("--dir", required=True)
    k = sub.add_parser("pki-bundle")
    k.add_argument("--dir", required=True)
    k.add_argument("--member", required=True)
    for verb in ("pki-install", "pki-remove"):
        k = sub.add_parser(verb)
        _placement(k)
        k.add_argument("--name", required=True)
    sub.add_parser("ssh-identity-remove").add_argument("--file", required=True)
    w = sub.add_parser("wait-store", help="docker.service's ExecStartPre on a systemd host")
    w.add_argument("--timeout", type=float, default=90)

    b = sub.add_parser("bridge-up")
    b.add_argument("--bridge", required=True)
    b.add_argument("--address", required=True)
    b.add_argument("--prefixlen", type=int, required=True)
    sub.add_parser("bridge-down").add_argument("--bridge", required=True)

    h = sub.add_parser("host-up")
    for a in ("--netns", "--hostname", "--veth", "--address", "--bridge"):
        h.add_argument(a, required=True)
    h.add_argument("--prefixlen", type=int, required=True)
    h = sub.add_parser("host-down")
    h.add_argument("--netns", required=True)
    h.add_argument("--veth", required=True)

    e = sub.add_parser("etcd-up")
    _placement(e)
    for a in ("--name", "--address", "--token", "--initial-cluster"):
        e.add_argument(a, required=True)
    e.add_argument("--client-port", type=int, required=True)
    e.add_argument("--peer-port", type=int, required=True)
    e = sub.add_parser("etcd-down")
    _placement(e)
    e.add_argument("--name", required=True)
    e = sub.add_parser("etcd-health")
    e.add_argument("--endpoint", action="append", required=True)
    e.add_argument("--name", action="append", required=True)
    e.add_argument("--bridge", help="check routes go through this bridge (local lab)")
    e.add_argument("--tls-dir", help="the lab's CA and client certificate (TLS lab)")
    e.add_argument("--timeout", type=float, default=60)

    for verb in ("docker-up", "docker-down"):
        d = sub.add_parser(verb)
        _placement(d)
        for a in ("--hostname", "--advertise", "--etcd-endpoint"):
            d.add_argument(a, required=True)
        if verb == "docker-up":
            d.add_argument("--cluster-store", required=True)
    for verb in ("image-import", "image-remove"):
        i = sub.add_parser(verb)
        _placement(i)
        i.add_argument("--hostname", required=True)
        i.add_argument("--image", required=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        dispatch(args)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    except Exception as e:  # a Docker API error: one line, not a traceback
        if type(e).__module__.startswith("docker"):
            print(f"error: Docker API: {e}", file=sys.stderr, flush=True)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
