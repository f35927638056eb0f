"""Operations on a real host managed by systemd (a VM reached over SSH): run *on* that host.

The program copies this package to each host and runs
``python3 -m overlaylab.hostops <verb> --systemd`` there through ``pulumi_command.remote``. It needs
only the host's python3 standard library, Debian's docker.io, systemd, and etcd-server (which
it installs with apt where etcd is missing, and purges again on destroy).

Everything is idempotent and reversible: before the first change a host's original
``/etc/default/etcd`` and ``/etc/docker/daemon.json`` (or their absence) and the services'
active/enabled states are saved under ``/var/lib/overlaylab/backup``; destroy puts them back
byte for byte and leaves the services as they were.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from overlaylab import daemonjson
from overlaylab.errors import DockerError, LabError, PreflightError
from overlaylab.etcd import EtcdClient
from overlaylab.hostops import (
    CLIENT,
    SERF_PORT,
    busybox_rootfs,
    check_docker_version,
    check_etcd_version,
    client_tls,
    log,
    parse_etcd_version,
    refuse_foreign_data_dir,
    run,
    serf_listening,
    wait_for,
)

#: Where the program copies this package on a host (docker's drop-in runs it from there).
REMOTE_LIB = "/usr/local/lib/overlaylab"
STATE = Path("/var/lib/overlaylab")
BACKUP = STATE / "backup"
ETCD_DEFAULT = Path("/etc/default/etcd")
DAEMON_JSON = Path("/etc/docker/daemon.json")
ETCD_DATA = Path("/var/lib/etcd/overlaylab")  # never Debian's /var/lib/etcd/default
DOCKER_DROPIN = Path("/etc/systemd/system/docker.service.d/10-overlay-etcd.conf")
ETCD_DROPIN = Path("/etc/systemd/system/etcd.service.d/10-overlay-etcd.conf")
# The member listens on the host's own address. At boot Debian's unit may start it before that
# address exists ("bind: cannot assign requested address"), and Restart=on-abnormal does not
# restart a plain failure: the member, and every daemon using it, stayed down after a reboot.
ETCD_DROPIN_TEXT = """# Written by overlay-etcd; removed on destroy.
[Unit]
Wants=network-online.target
After=network-online.target

[Service]
Restart=on-failure
RestartSec=2s
"""
# At boot Docker would otherwise start beside etcd, before its member serves; its overlay
# driver then cannot restore the network's sandbox and every container on the overlay fails
# with "could not get network sandbox (oper true)" (moby/libnetwork#2322) until Docker is
# restarted once more. etcd is Type=notify: it is "started" once its member has joined.
# After= alone is not enough: when etcd's first start fails (its address not there yet) the
# start job is over and Docker starts while etcd waits to restart. Its store discovery then
# retries only 20 s later, and a container started meanwhile is announced to the other hosts
# with no VTEP: they never reach it (seen here as 100% loss after a reboot). So Docker waits
# for its store to be healthy, bounded, and never fails on it ("-": starts anyway).
STORE_WAIT = 90
DROPIN_TEXT = f"""# Written by overlay-etcd; removed on destroy.
[Unit]
Wants=etcd.service
After=etcd.service

[Service]
ExecStartPre=-/usr/bin/env PYTHONPATH={REMOTE_LIB} python3 -m overlaylab.hostops wait-store \\
    --timeout {STORE_WAIT}
"""
MARKER = STATE / "etcd-cluster.json"
ETCD_PACKAGE = "etcd-server"
INSTALLED_ETCD = STATE / "installed-etcd.json"  # only when this lab installed the package
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}


def wait_store(timeout: float) -> None:
    """Docker's ExecStartPre: hold dockerd until an etcd endpoint of its cluster store is
    healthy. Never fails: past the timeout, or with no store configured, Docker starts."""
    try:
        urls, tls = daemonjson.store_endpoints(
            DAEMON_JSON.read_text() if DAEMON_JSON.exists() else None
        )
        ctx = None
        if tls:
            ctx = ssl.create_default_context(cafile=tls["kv.cacertfile"])
            ctx.load_cert_chain(tls["kv.certfile"], tls["kv.keyfile"])
    except (OSError, ValueError, ssl.SSLError) as e:
        log(f"warning: cannot read the cluster store from {DAEMON_JSON} ({e}); not waiting")
        return
    if not urls:
        log(f"no etcd cluster store in {DAEMON_JSON}; not waiting")
        return
    clients = [EtcdClient(u, None, timeout=2, tls=ctx) for u in urls]

    def healthy() -> bool:
        for c in clients:
            with contextlib.suppress(LabError):
                if c.health():
                    return True
        return False

    start = time.monotonic()
    try:
        wait_for(f"the cluster store {', '.join(urls)}", healthy, timeout, interval=1.0)
    except LabError:
        log(
            f"warning: the cluster store {', '.join(urls)} is not healthy after {timeout:.0f}s;"
            " starting Docker anyway: overlay containers started before it answers may be"
            " unreachable from other hosts until restarted"
        )
        return
    log(f"the cluster store {', '.join(urls)} is healthy after {time.monotonic() - start:.1f}s")


def _loopback(port: int, tls_dir: str | None) -> EtcdClient:
    """This host's own member, on loopback (its certificate covers 127.0.0.1)."""
    scheme = "https" if tls_dir else "http"
    return EtcdClient(f"{scheme}://127.0.0.1:{port}", None, timeout=3, tls=client_tls(tls_dir))


# --- backups -----------------------------------------------------------------------------------


def _save_original(path: Path, unit: str) -> None:
    """Keep a file's original bytes (or its absence) and its unit's state; once only."""
    meta = BACKUP / f"{path.name}.json"
    if meta.exists():
        return
    BACKUP.mkdir(parents=True, exist_ok=True)
    if path.exists():
        shutil.copy2(path, BACKUP / f"{path.name}.orig")
    active = run(["systemctl", "is-active", unit], check=False).stdout.strip() == "active"
    enabled = run(["systemctl", "is-enabled", unit], check=False).stdout.strip() == "enabled"
    meta.write_text(json.dumps({"existed": path.exists(), "active": active, "enabled": enabled}))


def _restore_original(path: Path, unit: str) -> dict[str, Any] | None:
    """Put a file back exactly as it was; returns what was saved about its unit."""
    meta_file = BACKUP / f"{path.name}.json"
    if not meta_file.exists():
        return None
    meta = json.loads(meta_file.read_text())
    orig = BACKUP / f"{path.name}.orig"
    if meta["existed"]:
        shutil.copy2(orig, path)
    else:
        path.unlink(missing_ok=True)
    orig.unlink(missing_ok=True)
    meta_file.unlink()
    for d in (BACKUP, STATE):
        try:
            d.rmdir()
        except OSError:
            break
    return dict(meta)


def _unit_back(unit: str, meta: dict[str, Any]) -> None:
    run(["systemctl", "enable" if meta["enabled"] else "disable", unit], check=False)
    if meta["active"]:
        # Blocking: the host's own service (Debian's single-member etcd) is ready on its own.
        run(["systemctl", "restart", unit], check=False, timeout=120)
    else:
        run(["systemctl", "stop", unit], check=False)


def _dropin(path: Path, text: str | None) -> None:
    """Write (or, with None, remove) a systemd drop-in, and reload systemd if it changed."""
    if text is None:
        if not path.exists():
            return
        path.unlink()
        with contextlib.suppress(OSError):
            path.parent.rmdir()
    else:
        if path.exists() and path.read_text() == text:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    run(["systemctl", "daemon-reload"], check=False)


# --- preflight ---------------------------------------------------------------------------------


def listeners() -> dict[int, str]:
    """TCP/UDP port -> the process listening on it."""
    out: dict[int, str] = {}
    for line in run(["ss", "-Hlntup"], check=False).stdout.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        port = parts[4].rsplit(":", 1)[-1]
        m = re.search(r'\("([^"]+)"', line)
        if port.isdigit():
            out[int(port)] = m.group(1) if m else "?"
    return out


def engine_id() -> str:
    """Docker's engine ID: the key ID of /etc/docker/key.json (cloned VMs share it)."""
    try:
        return str(json.loads(Path("/etc/docker/key.json").read_text())["kid"])
    except (OSError, ValueError, KeyError):
        proc = run(["docker", "info", "-f", "{{.ID}}"], check=False)
        return proc.stdout.strip()


def preflight(*, client_port: int, peer_port: int) -> None:
    """Refuse a host that cannot run the lab, before anything on it is changed."""
    hostname = socket.gethostname()
    if os.geteuid() != 0:
        raise PreflightError(f"{hostname}: the SSH user must be root (or use sudo as root)")
    if not Path("/run/systemd/system").is_dir():
        raise PreflightError(
            f"{hostname}: systemd is not running (no /run/systemd/system); this stack manages "
            f"etcd and Docker as systemd units: use a host booted with systemd"
        )
    for tool, pkg in (
        ("dockerd", "docker.io"),
        ("ip", "iproute2"),
        ("ss", "iproute2"),
        ("busybox", "busybox-static"),
    ):
        if shutil.which(tool) is None:
            raise PreflightError(f"{hostname}: {tool} is missing: apt-get install {pkg}")
    check_docker_version(run(["dockerd", "--version"]).stdout)
    if shutil.which("etcd") is not None:
        etcd = "present"
        check_etcd_version(parse_etcd_version(run(["etcd", "--version"]).stdout))
    else:
        # Installed by etcd-up, from the distribution's package, once every host passed.
        candidate = apt_candidate(ETCD_PACKAGE)
        if candidate is None:
            raise PreflightError(
                f"{hostname}: etcd is missing and apt offers no {ETCD_PACKAGE} package: "
                f"install etcd 3.4 or 3.5 (Debian 11/12: apt-get install {ETCD_PACKAGE})"
            )
        try:
            check_etcd_version(parse_etcd_version(candidate))
        except PreflightError as e:
            raise PreflightError(f"{hostname}: apt's {ETCD_PACKAGE} {candidate}: {e}") from None
        etcd = f"to install: {ETCD_PACKAGE} {candidate}"
    probe = "ovlvxlanprobe"
    res = run(
        [
            "ip",
            "link",
            "add",
            probe,
            "type",
            "vxlan",
            "id",
            "4242",
            "dstport",
            "4789",
            "local",
            "127.0.0.1",
        ],
        check=False,
    )
    if res.returncode != 0:
        raise PreflightError(
            f"{hostname}: the kernel cannot make VXLAN links ({res.stderr.strip()})"
        )
    run(["ip", "link", "del", probe], check=False)
    ours = MARKER.exists()
    busy = listeners()
    # Debian's packaged etcd holds 2379/2380 on loopback from install on; it is reconfigured.
    allowed = {client_port: "etcd", peer_port: "etcd", 7946: "dockerd" if ours else ""}
    for port, owner in allowed.items():
        if port in busy and busy[port] != owner:
            raise PreflightError(
                f"{hostname}: port {port} is in use by {busy[port]}; the lab needs it for "
                f"{'etcd' if port != 7946 else 'serf (overlay discovery)'}: free it"
            )
    os_name = "unknown"
    with open("/etc/os-release") as f:
        for line in f:
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip().strip('"')
    print(
        json.dumps(
            {
                "hostname": hostname,
                "engineId": engine_id(),
                "os": os_name,
                "kernel": os.uname().release,
                "etcd": etcd,
            }
        ),
        flush=True,
    )


def apt_candidate(package: str) -> str | None:
    """The version apt would install (``3.4.23-4+b4``), or None (no apt, no such package)."""
    if shutil.which("apt-cache") is None:
        return None
    out = run(["apt-cache", "policy", package], check=False).stdout
    m = re.search(r"^\s*Candidate:\s*(\S+)", out, re.MULTILINE)
    if m is None or m.group(1) == "(none)":
        return None
    return m.group(1)


def _install_etcd() -> None:
    """Install etcd from the distribution's package; destroy purges it again."""
    had_data = Path("/var/lib/etcd").exists()
    res = run(
        ["apt-get", "install", "-y", "--no-install-recommends", ETCD_PACKAGE],
        check=False,
        timeout=600,
        env=APT_ENV,
    )
    if res.returncode != 0:
        tail = " | ".join((res.stderr or res.stdout).strip().splitlines()[-3:])
        raise LabError(f"apt-get install {ETCD_PACKAGE} failed: {tail}")
    STATE.mkdir(parents=True, exist_ok=True)
    INSTALLED_ETCD.write_text(json.dumps({"package": ETCD_PACKAGE, "hadData": had_data}))
    log(f"installed {ETCD_PACKAGE} {apt_installed(ETCD_PACKAGE)} (destroy purges it)")


def apt_installed(package: str) -> str:
    out = run(["dpkg-query", "-W", "-f=${Version}", package], check=False)
    return out.stdout.strip() if out.returncode == 0 else ""


def _purge_etcd() -> None:
    """Undo ``_install_etcd``: purge the package, and its data dir if there was none before."""
    meta = json.loads(INSTALLED_ETCD.read_text())
    run(["apt-get", "purge", "-y", meta["package"]], check=False, timeout=300, env=APT_ENV)
    if not meta.get("hadData"):
        shutil.rmtree("/var/lib/etcd", ignore_errors=True)
    INSTALLED_ETCD.unlink()
    with contextlib.suppress(OSError):
        STATE.rmdir()
    log(f"purged {meta['package']}, which this lab had installed")


def hosts_unique(reports: Sequence[str]) -> None:
    """Run where pulumi runs, on every host's preflight line: no shared hostname or engine ID."""
    seen: dict[str, dict[str, str]] = {"hostname": {}, "engineId": {}}
    for raw in reports:
        rep = json.loads(raw.strip().splitlines()[-1])
        for key, what, fix in (
            ("hostname", "hostname", "give each host its own hostname (hostnamectl)"),
            (
                "engineId",
                "Docker engine ID",
                "cloned VM: stop docker, remove /etc/docker/key.json on one host, start docker",
            ),
        ):
            value = rep[key]
            if value in seen[key]:
                raise PreflightError(
                    f"hosts {seen[key][value]} and {rep['hostname']} share the {what} "
                    f"{value}: {fix}"
                )
            seen[key][value] = rep["hostname"]
    log(f"preflight ok on {len(reports)} hosts: hostnames and Docker engine IDs unique")


# --- etcd --------------------------------------------------------------------------------------


def etcd_up(
    *,
    name: str,
    address: str,
    client_port: int,
    peer_port: int,
    token: str,
    initial_cluster: str,
    tls_dir: str | None = None,
) -> None:
    identity = {"name": name, "token": token, "initialCluster": initial_cluster}
    refuse_foreign_data_dir(ETCD_DATA, MARKER, identity)
    if shutil.which("etcd") is None:
        _install_etcd()  # preflight checked apt's version
    _save_original(ETCD_DEFAULT, "etcd")
    STATE.mkdir(parents=True, exist_ok=True)
    MARKER.write_text(json.dumps(identity))
    scheme = "https" if tls_dir else "http"
    client, peer = f"{scheme}://{address}:{client_port}", f"{scheme}://{address}:{peer_port}"
    env = {
        "ETCD_NAME": name,
        "ETCD_DATA_DIR": str(ETCD_DATA),
        "ETCD_LISTEN_PEER_URLS": peer,
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": peer,
        "ETCD_LISTEN_CLIENT_URLS": f"{client},{scheme}://127.0.0.1:{client_port}",
        "ETCD_ADVERTISE_CLIENT_URLS": client,
        "ETCD_INITIAL_CLUSTER_TOKEN": token,
        "ETCD_INITIAL_CLUSTER": initial_cluster,
        "ETCD_INITIAL_CLUSTER_STATE": "new",
        "ETCD_ENABLE_V2": "true",
    }
    if tls_dir:
        cert, key, ca = f"{tls_dir}/{name}.pem", f"{tls_dir}/{name}-key.pem", f"{tls_dir}/ca.pem"
        env.update(
            ETCD_CERT_FILE=cert,
            ETCD_KEY_FILE=key,
            ETCD_TRUSTED_CA_FILE=ca,
            ETCD_CLIENT_CERT_AUTH="true",
            ETCD_PEER_CERT_FILE=cert,
            ETCD_PEER_KEY_FILE=key,
            ETCD_PEER_TRUSTED_CA_FILE=ca,
            ETCD_PEER_CLIENT_CERT_AUTH="true",
        )
    text = "# Written by overlay-etcd; destroy restores the original.\n" + "".join(
        f'{k}="{v}"\n' for k, v in env.items()
    )
    changed = not ETCD_DEFAULT.exists() or ETCD_DEFAULT.read_text() != text
    ETCD_DEFAULT.write_text(text)
    _dropin(ETCD_DROPIN, ETCD_DROPIN_TEXT)
    run(["systemctl", "enable", "etcd"], check=False)
    active = run(["systemctl", "is-active", "etcd"], check=False).stdout.strip() == "active"
    if changed or not active:
        # --no-block: a static member reports ready only once a quorum runs, and the other
        # members are started by other commands. Debian's own single member (data in
        # /var/lib/etcd/default) stops here; its data is left alone and comes back on destroy.
        run(["systemctl", "restart", "--no-block", "etcd"])
    wait_for(f"etcd {name} to listen on {client}", lambda: _port_open(client_port), 60)
    log(f"etcd {name}: systemd unit etcd with {ETCD_DEFAULT}, data {ETCD_DATA}, peers {peer}")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def etcd_down(*, name: str) -> None:
    if not MARKER.exists() and not (BACKUP / f"{ETCD_DEFAULT.name}.json").exists():
        log(f"etcd {name}: nothing of this lab on the host")
        return  # a second destroy must not stop the host's own etcd
    run(["systemctl", "stop", "etcd"], check=False)
    _dropin(ETCD_DROPIN, None)
    shutil.rmtree(ETCD_DATA, ignore_errors=True)
    MARKER.unlink(missing_ok=True)
    meta = _restore_original(ETCD_DEFAULT, "etcd")
    if INSTALLED_ETCD.exists():
        _purge_etcd()
    elif meta is not None:
        _unit_back("etcd", meta)
    log(f"etcd {name}: data removed, {ETCD_DEFAULT} and the etcd unit restored")


# --- dockerd -----------------------------------------------------------------------------------


def docker_up(
    *,
    hostname: str,
    cluster_store: str,
    advertise: str,
    client_port: int,
    tls_dir: str | None = None,
) -> None:
    check_docker_version(run(["dockerd", "--version"]).stdout)
    _save_original(DAEMON_JSON, "docker")
    before = DAEMON_JSON.read_text() if DAEMON_JSON.exists() else None
    opts = None
    if tls_dir:
        opts = {
            "kv.cacertfile": f"{tls_dir}/ca.pem",
            "kv.certfile": f"{tls_dir}/{CLIENT}.pem",
            "kv.keyfile": f"{tls_dir}/{CLIENT}-key.pem",
        }
    merged = daemonjson.merge(before, cluster_store, advertise, opts)
    for tcp in daemonjson.tcp_listeners(merged):
        log(f"warning: {DAEMON_JSON} already had dockerd listen on {tcp}; left as it was")
    _dropin(DOCKER_DROPIN, DROPIN_TEXT)
    if merged != before:
        DAEMON_JSON.parent.mkdir(parents=True, exist_ok=True)
        DAEMON_JSON.write_text(merged)
        res = run(["systemctl", "restart", "docker"], check=False, timeout=120)
        if res.returncode != 0:
            journal = run(["journalctl", "-u", "docker", "-n", "5", "--no-pager"], check=False)
            raise DockerError(f"docker did not restart on {hostname}", stdout=journal.stdout)
    run(["systemctl", "enable", "docker"], check=False)
    etcd = _loopback(client_port, tls_dir)
    key = f"/docker/nodes/{advertise}"
    try:
        wait_for(
            f"dockerd on {hostname} to register {key}", lambda: etcd.v2_get(key) is not None, 60
        )
    except LabError:
        raise DockerError(f"dockerd on {hostname} never registered {key} in etcd") from None
    # registered is not joined (see hostops.docker_up)
    try:
        wait_for(f"dockerd on {hostname} to start serf", serf_listening, 60)
    except LabError:
        raise DockerError(
            f"dockerd on {hostname} registered {key} but never started serf (TCP "
            f"{SERF_PORT}): journalctl -u docker"
        ) from None
    log(
        f"dockerd on {hostname}: cluster-store {cluster_store}, advertise {advertise} "
        f"(in {DAEMON_JSON}, kept across reboots), joined the store"
    )


def docker_down(
    *, hostname: str, advertise: str, client_port: int, tls_dir: str | None = None
) -> None:
    _dropin(DOCKER_DROPIN, None)
    meta = _restore_original(DAEMON_JSON, "docker")
    if meta is not None:
        run(["systemctl", "restart", "docker"], check=False, timeout=120)
        _unit_back("docker", meta)
    with contextlib.suppress(LabError):
        _loopback(client_port, tls_dir).v2_delete(f"/docker/nodes/{advertise}")
    log(f"dockerd on {hostname}: {DAEMON_JSON} restored, docker restarted")


def _imported(image: str) -> Path:
    return STATE / f"imported-{image.replace('/', '_').replace(':', '_')}"


def image_import(*, hostname: str, image: str) -> None:
    if run(["docker", "image", "inspect", image], check=False).returncode == 0:
        log(f"{hostname}: image {image} present (the host's own: destroy keeps it)")
        return
    proc = subprocess.run(
        ["docker", "import", "-", image], input=busybox_rootfs(), capture_output=True, check=False
    )
    if proc.returncode != 0:
        raise DockerError(f"{hostname}: docker import failed: {proc.stderr.decode().strip()}")
    STATE.mkdir(parents=True, exist_ok=True)
    _imported(image).write_text("imported by overlay-etcd\n")
    log(f"{hostname}: imported {image} from busybox-static")


def image_remove(*, hostname: str, image: str) -> None:
    if not _imported(image).exists():
        return  # the host had it before: not ours to remove
    run(["docker", "image", "rm", "-f", image], check=False)
    _imported(image).unlink()
    with contextlib.suppress(OSError):
        STATE.rmdir()
    log(f"{hostname}: removed image {image}")


def pki_install(*, name: str, directory: str) -> None:
    """Unpack this host's certificates (a base64 tar on stdin, from pki-bundle)."""
    data = base64.b64decode(sys.stdin.read().strip())
    d = Path(directory)
    d.mkdir(mode=0o750, parents=True, exist_ok=True)
    # Member by member, plain files with plain names only (the hosts' python 3.11.2 predates
    # extraction filters).
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            src = tar.extractfile(m) if m.isfile() and "/" not in m.name else None
            if src is None or m.name.startswith("."):
                raise LabError(f"unexpected entry {m.name!r} in the certificate bundle")
            (d / m.name).write_bytes(src.read())
    # etcd runs as the etcd user and must read its own key; the client key stays root's.
    for f in d.iterdir():
        if f.name == f"{name}-key.pem":
            f.chmod(0o640)
        elif f.name.endswith("-key.pem"):
            f.chmod(0o600)
        else:
            f.chmod(0o644)
    if run(["id", "etcd"], check=False).returncode == 0:
        run(["chgrp", "etcd", str(d), str(d / f"{name}-key.pem")])
    log(f"{name}: certificates installed in {d}")


def pki_remove(*, name: str, directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    with contextlib.suppress(OSError):
        Path(directory).parent.rmdir()
    log(f"{name}: certificates removed from {directory}")
