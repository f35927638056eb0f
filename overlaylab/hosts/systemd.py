"""Systemd hosts: a real host (a VM reached over SSH) whose etcd and Docker are systemd units.

The program copies this package to each host and runs
``python3 -m overlaylab.hostops <verb> --systemd`` there through ``pulumi_command.remote``; the
verb acts on the host it runs on. It needs only the host's python3 standard library, Debian's
docker.io, systemd, and etcd-server (which it installs with apt where etcd is missing, and
purges again on destroy). What it writes, and how that is put back, is ``systemd_files``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from overlaylab import daemonjson, verbs
from overlaylab.defaults import UNDERLAY_MTU
from overlaylab.errors import DockerError, LabError, PreflightError
from overlaylab.etcd import EtcdClient, etcd_url
from overlaylab.hosts import member, pki, serf
from overlaylab.hosts import systemd_files as files
from overlaylab.hosts.base import need
from overlaylab.hosts.dockerd import (
    SERF_PORT,
    clear_stale_endpoints,
    node_key,
    serf_listening,
    wait_for_turn,
)
from overlaylab.hosts.image import busybox_rootfs
from overlaylab.hosts.names import names_settle
from overlaylab.hosts.proc import log, run, tcp_open, wait_for
from overlaylab.hosts.underlay import check_underlay_mtus, read_underlay
from overlaylab.hosts.versions import check_docker_version, check_etcd_version, parse_etcd_version


class SystemdHost:
    """The host this runs on; certificates (TLS labs) in ``tls_dir``."""

    def __init__(self, *, tls_dir: str | None = None) -> None:
        self.tls_dir = tls_dir

    # --- preflight -----------------------------------------------------------------------------

    def preflight(self, *, client_port: int, peer_port: int, address: str | None = None) -> None:
        """Refuse a host that cannot run the lab, before anything on it is changed; print a
        one-line JSON report (hostname, engine ID, the MTU of the interface holding the lab
        ``address``, ...) for ``hosts-unique``."""
        hostname = socket.gethostname()
        if os.geteuid() != 0:
            raise PreflightError(f"{hostname}: the SSH user must be root (or use sudo as root)")
        if not Path("/run/systemd/system").is_dir():
            raise PreflightError(
                f"{hostname}: systemd is not running (no /run/systemd/system); this stack "
                f"manages etcd and Docker as systemd units: use a host booted with systemd"
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
        etcd = _etcd_state(hostname)
        _check_vxlan(hostname)
        _check_ports(hostname, client_port, peer_port)
        report = {
            "hostname": hostname,
            "engineId": engine_id(),
            "os": _os_name(),
            "kernel": os.uname().release,
            "etcd": etcd,
            **(read_underlay(hostname, address) if address else {}),
        }
        print(json.dumps(report), flush=True)

    # --- certificates ----------------------------------------------------------------------------

    def pki_install(self, *, name: str) -> None:
        (directory,) = need("pki-install", tls_dir=self.tls_dir)
        pki.pki_install(name=name, directory=directory)

    def pki_remove(self, *, name: str) -> None:
        (directory,) = need("pki-remove", tls_dir=self.tls_dir)
        pki.pki_remove(name=name, directory=directory)

    # --- etcd ------------------------------------------------------------------------------------

    def etcd_up(self, m: member.Member) -> None:
        member.member_up(SystemdEtcd(self.tls_dir), m)

    def etcd_down(self, *, name: str) -> None:
        member.member_down(SystemdEtcd(self.tls_dir), name)

    # --- dockerd ---------------------------------------------------------------------------------

    def docker_up(
        self,
        *,
        hostname: str,
        cluster_store: str,
        advertise: str,
        etcd_endpoint: str,
        start_after: Sequence[tuple[str, str]] = (),
    ) -> None:
        check_docker_version(run(["dockerd", "--version"]).stdout)
        wait_for_turn(
            start_after,
            hostname=hostname,
            advertise=advertise,
            etcd=self._loopback(_port(etcd_endpoint)),
            serf_on=lambda _, adv: tcp_open(adv.rsplit(":", 1)[0], SERF_PORT, None),
        )
        path = files.DAEMON_JSON
        files.save_original(path, "docker")
        before = path.read_text() if path.exists() else None
        opts = pki.docker_tls_opts(self.tls_dir)
        merged = daemonjson.merge(before, cluster_store, advertise, opts)
        for tcp in daemonjson.tcp_listeners(merged):
            log(f"warning: {path} already had dockerd listen on {tcp}; left as it was")
        files.dropin(files.DOCKER_DROPIN, files.DROPIN_TEXT)
        if merged != before:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(merged)
            res = run(["systemctl", "restart", "docker"], check=False, timeout=120)
            if res.returncode != 0:
                journal = run(["journalctl", "-u", "docker", "-n", "5", "--no-pager"], check=False)
                raise DockerError(f"docker did not restart on {hostname}", stdout=journal.stdout)
        run(["systemctl", "enable", "docker"], check=False)
        self._wait_joined(hostname, advertise, _port(etcd_endpoint))
        store = self._loopback(_port(etcd_endpoint))
        clear_stale_endpoints(["docker"], store, advertise.rsplit(":", 1)[0], hostname)
        self._keeper_up(hostname, _port(etcd_endpoint))
        log(
            f"dockerd on {hostname}: cluster-store {cluster_store}, advertise {advertise} "
            f"(in {path}, kept across reboots), joined the store"
        )

    def _wait_joined(self, hostname: str, advertise: str, client_port: int) -> None:
        etcd = self._loopback(client_port)
        key = node_key(advertise)
        try:
            wait_for(
                f"dockerd on {hostname} to register {key}",
                lambda: etcd.v2_get(key) is not None,
                60,
            )
        except LabError:
            raise DockerError(f"dockerd on {hostname} never registered {key} in etcd") from None
        # Registered is not joined (see netns_daemons.docker_up).
        try:
            wait_for(f"dockerd on {hostname} to start serf", serf_listening, 60)
        except LabError:
            raise DockerError(
                f"dockerd on {hostname} registered {key} but never started serf (TCP "
                f"{SERF_PORT}): journalctl -u docker"
            ) from None

    def _keeper_up(self, hostname: str, client_port: int) -> None:
        record = verbs.NamesKeep(
            hostname=hostname,
            docker_host="unix:///var/run/docker.sock",
            etcd_endpoint=etcd_url("127.0.0.1", client_port, bool(self.tls_dir)),
            tls_dir=self.tls_dir,
        )
        files.dropin(files.KEEPER_UNIT, files.keeper_unit_text(record.argv()))
        unit = files.KEEPER_UNIT.name
        res = run(["systemctl", "enable", "--now", unit], check=False)
        if res.returncode != 0:
            raise DockerError(f"{unit} did not start on {hostname}: {res.stderr.strip()[-300:]}")
        log(f"names keeper on {hostname}: {unit} enabled and started")

    def docker_down(self, *, hostname: str, advertise: str, etcd_endpoint: str) -> None:
        if files.KEEPER_UNIT.exists():
            run(["systemctl", "disable", "--now", files.KEEPER_UNIT.name], check=False)
            files.dropin(files.KEEPER_UNIT, None)
        files.dropin(files.DOCKER_DROPIN, None)
        meta = files.restore_original(files.DAEMON_JSON, "docker")
        if meta is not None:
            run(["systemctl", "restart", "docker"], check=False, timeout=120)
            files.unit_back("docker", meta)
        with contextlib.suppress(LabError):
            self._loopback(_port(etcd_endpoint)).v2_delete(node_key(advertise))
        log(f"dockerd on {hostname}: {files.DAEMON_JSON} restored, docker restarted")

    def serf_mesh(
        self, *, hostname: str, advertise: str, etcd_endpoint: str, peers: list[str], timeout: float
    ) -> None:
        serf.serf_mesh(
            hostname=hostname,
            advertise=advertise,
            peers=peers,
            etcd=self._loopback(_port(etcd_endpoint)),
            read_log=_docker_journal,
            timeout=timeout,
        )

    def _loopback(self, port: int) -> EtcdClient:
        return _loopback(self.tls_dir, port)

    # --- image -----------------------------------------------------------------------------------

    def image_import(self, *, hostname: str, image: str) -> None:
        if run(["docker", "image", "inspect", image], check=False).returncode == 0:
            log(f"{hostname}: image {image} present (the host's own: destroy keeps it)")
            return
        proc = subprocess.run(
            ["docker", "import", "-", image],
            input=busybox_rootfs(),
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise DockerError(f"{hostname}: docker import failed: {proc.stderr.decode().strip()}")
        files.STATE.mkdir(parents=True, exist_ok=True)
        _imported(image).write_text("imported by overlay-etcd\n")
        log(f"{hostname}: imported {image} from busybox-static")

    def image_remove(self, *, hostname: str, image: str) -> None:
        if not _imported(image).exists():
            return  # the host had it before: not ours to remove
        run(["docker", "image", "rm", "-f", image], check=False)
        _imported(image).unlink()
        with contextlib.suppress(OSError):
            files.STATE.rmdir()
        log(f"{hostname}: removed image {image}")

    def names_settle(
        self, *, hostname: str, container: str, names: list[str], network: str, image: str
    ) -> None:
        names_settle(hostname=hostname, docker=["docker"], container=container, names=names,
                     network=network, image=image)  # fmt: skip


class SystemdEtcd:
    """The member as this host's etcd unit, configured in /etc/default/etcd
    (``member.EtcdSeat``); what it changes there is put back by ``remove``."""

    data, marker = files.ETCD_DATA, files.MARKER
    listen_timeout = 60.0
    clean_failed_start = False  # the unit restarts on failure (its drop-in)

    def __init__(self, tls_dir: str | None) -> None:
        self.tls_dir, self.tls = tls_dir, bool(tls_dir)
        self._ctx = pki.client_tls(tls_dir)
        self._port = 0

    def prepare(self) -> None:
        if shutil.which("etcd") is None:
            files.install_etcd()  # preflight checked apt's version

    def start(self, start: member.Start) -> str:
        m = start.member
        files.save_original(files.ETCD_DEFAULT, "etcd")
        env = _etcd_env(start)
        env.update(_etcd_tls_env(self.tls_dir, m.name))
        text = "# Written by overlay-etcd; destroy restores the original.\n" + "".join(
            f'{k}="{v}"\n' for k, v in env.items()
        )
        default = files.ETCD_DEFAULT
        changed = not default.exists() or default.read_text() != text
        default.write_text(text)
        files.dropin(files.ETCD_DROPIN, files.ETCD_DROPIN_TEXT)
        run(["systemctl", "enable", "etcd"], check=False)
        active = run(["systemctl", "is-active", "etcd"], check=False).stdout.strip() == "active"
        if changed or not active:
            # --no-block: a static member reports ready only once a quorum runs, and the other
            # members are started by other commands. Debian's own single member (data in
            # /var/lib/etcd/default) stops here; its data is left alone and comes back on
            # destroy.
            run(["systemctl", "restart", "--no-block", "etcd"])
        self._port = m.client_port
        return f"systemd unit etcd with {default}, data {files.ETCD_DATA}"

    def listening(self) -> bool:
        return tcp_open("127.0.0.1", self._port, None)

    def client_for(self, url: str) -> EtcdClient:
        return EtcdClient(url, None, timeout=2, tls=self._ctx)

    def own(self, client_url: str) -> EtcdClient:
        """On loopback (its certificate covers 127.0.0.1)."""
        return _loopback(self.tls_dir, _port(client_url))

    def ours(self) -> bool:
        # a second destroy must not stop the host's own etcd
        return files.MARKER.exists() or (files.BACKUP / f"{files.ETCD_DEFAULT.name}.json").exists()

    def stop(self, name: str) -> None:
        run(["systemctl", "stop", "etcd"], check=False)

    def remove(self) -> str:
        files.dropin(files.ETCD_DROPIN, None)
        meta = files.restore_original(files.ETCD_DEFAULT, "etcd")
        if files.INSTALLED_ETCD.exists():
            files.purge_etcd()
        elif meta is not None:
            files.unit_back("etcd", meta)
        return f"{files.ETCD_DEFAULT} and the etcd unit restored"


def _loopback(tls_dir: str | None, port: int) -> EtcdClient:
    """This host's own member, on loopback (its certificate covers 127.0.0.1)."""
    url = etcd_url("127.0.0.1", port, bool(tls_dir))
    return EtcdClient(url, None, timeout=3, tls=pki.client_tls(tls_dir))


def _port(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[-1])


def _imported(image: str) -> Path:
    return files.STATE / f"imported-{image.replace('/', '_').replace(':', '_')}"


def _etcd_env(start: member.Start) -> dict[str, str]:
    """The member's settings, as /etc/default/etcd's variables."""
    peer, client = start.peer, start.client
    return {
        "ETCD_NAME": start.member.name,
        "ETCD_DATA_DIR": str(files.ETCD_DATA),
        "ETCD_LISTEN_PEER_URLS": peer,
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": peer,
        "ETCD_LISTEN_CLIENT_URLS": f"{client},{start.loopback}",
        "ETCD_ADVERTISE_CLIENT_URLS": client,
        "ETCD_INITIAL_CLUSTER_TOKEN": start.member.token,
        "ETCD_INITIAL_CLUSTER": start.initial_cluster,
        "ETCD_INITIAL_CLUSTER_STATE": start.state,
        "ETCD_ENABLE_V2": "true",
    } | _timing_env(start.member.timing)


def _timing_env(timing: tuple[int, int] | None) -> dict[str, str]:
    """etcd.heartbeatMs/electionMs when the stack sets them; else etcd's own 100 and 1000."""
    if timing is None:
        return {}
    return {"ETCD_HEARTBEAT_INTERVAL": str(timing[0]), "ETCD_ELECTION_TIMEOUT": str(timing[1])}


def _etcd_tls_env(tls_dir: str | None, name: str) -> dict[str, str]:
    if not tls_dir:
        return {}
    cert, key, ca = pki.etcd_tls_files(tls_dir, name)
    return {
        "ETCD_CERT_FILE": cert,
        "ETCD_KEY_FILE": key,
        "ETCD_TRUSTED_CA_FILE": ca,
        "ETCD_CLIENT_CERT_AUTH": "true",
        "ETCD_PEER_CERT_FILE": cert,
        "ETCD_PEER_KEY_FILE": key,
        "ETCD_PEER_TRUSTED_CA_FILE": ca,
        "ETCD_PEER_CLIENT_CERT_AUTH": "true",
    }


# --- preflight's parts ---------------------------------------------------------------------------


def _etcd_state(hostname: str) -> str:
    """``present``, or the distribution package etcd-up will install; refuses a wrong version."""
    if shutil.which("etcd") is not None:
        check_etcd_version(parse_etcd_version(run(["etcd", "--version"]).stdout))
        return "present"
    # Installed by etcd-up, from the distribution's package, once every host passed.
    package = files.ETCD_PACKAGE
    candidate = files.apt_candidate(package)
    if candidate is None:
        raise PreflightError(
            f"{hostname}: etcd is missing and apt offers no {package} package: "
            f"install etcd 3.4 or 3.5 (Debian 11/12: apt-get install {package})"
        )
    try:
        check_etcd_version(parse_etcd_version(candidate))
    except PreflightError as e:
        raise PreflightError(f"{hostname}: apt's {package} {candidate}: {e}") from None
    return f"to install: {package} {candidate}"


def _check_vxlan(hostname: str) -> None:
    probe = "ovlvxlanprobe"
    res = run(
        [
            *("ip", "link", "add", probe, "type", "vxlan", "id", "4242"),
            *("dstport", "4789", "local", "127.0.0.1"),
        ],
        check=False,
    )
    if res.returncode != 0:
        raise PreflightError(
            f"{hostname}: the kernel cannot make VXLAN links ({res.stderr.strip()})"
        )
    run(["ip", "link", "del", probe], check=False)


def _check_ports(hostname: str, client_port: int, peer_port: int) -> None:
    ours = files.MARKER.exists()
    busy = listeners()
    # Debian's packaged etcd holds 2379/2380 on loopback from install on; it is reconfigured.
    allowed = {client_port: "etcd", peer_port: "etcd", SERF_PORT: "dockerd" if ours else ""}
    for port, owner in allowed.items():
        if port in busy and busy[port] != owner:
            raise PreflightError(
                f"{hostname}: port {port} is in use by {busy[port]}; the lab needs it for "
                f"{'etcd' if port != SERF_PORT else 'serf (overlay discovery)'}: free it"
            )


def _os_name() -> str:
    with open("/etc/os-release") as f:
        for line in f:
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    return "unknown"


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


def hosts_unique(reports: Sequence[str], mtu: int = UNDERLAY_MTU) -> None:
    """Run where pulumi runs, on every host's preflight line: no shared hostname or engine ID,
    and every host's lab interface carrying ``mtu`` (lab.mtu), all alike."""
    seen: dict[str, dict[str, str]] = {"hostname": {}, "engineId": {}}
    parsed = [json.loads(raw.strip().splitlines()[-1]) for raw in reports]
    for rep in parsed:
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
    mtus = check_underlay_mtus(parsed, mtu)
    log(f"preflight ok on {len(reports)} hosts: hostnames and Docker engine IDs unique; {mtus}")


def _docker_journal() -> str:
    """docker.service's journal since its current start (one invocation of the unit)."""
    show = ["systemctl", "show", "-p", "InvocationID", "--value", "docker.service"]
    inv = run(show, check=False).stdout.strip()
    if not inv:
        return ""
    journal = ["journalctl", "-o", "cat", "--no-pager", f"_SYSTEMD_INVOCATION_ID={inv}"]
    return run(journal, check=False).stdout
