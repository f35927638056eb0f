"""What a systemd host's verbs write on it, and how each is put back.

Before the first change a host's original ``/etc/default/etcd`` and ``/etc/docker/daemon.json``
(or their absence) and the services' active/enabled states are saved under
``/var/lib/overlaylab/backup``; destroy puts them back byte for byte and leaves the services
as they were. etcd-server is installed with apt where etcd is missing, and purged again.
Also here: ``wait_store``, the ExecStartPre that Docker's drop-in runs at every start.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import ssl
import time
from pathlib import Path
from typing import Any

from overlaylab import daemonjson
from overlaylab.errors import LabError
from overlaylab.etcd import EtcdClient
from overlaylab.hosts.proc import log, run, wait_for
from overlaylab.verbs import STORE_WAIT

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
DROPIN_TEXT = f"""# Written by overlay-etcd; removed on destroy.
[Unit]
Wants=etcd.service
After=etcd.service

[Service]
ExecStartPre=-/usr/bin/env PYTHONPATH={REMOTE_LIB} python3 -m overlaylab.hostops wait-store \\
    --timeout {STORE_WAIT}
"""
KEEPER_UNIT = Path("/etc/systemd/system/overlaylab-names-keeper.service")


def keeper_unit_text(argv: list[str]) -> str:
    """The names keeper (``hosts/keeper.py``) as a unit: it follows Docker's events and
    reconnects by itself when Docker restarts, so it is not bound to docker.service."""
    return f"""# Written by overlay-etcd; removed on destroy.
[Unit]
Description=overlay-etcd names keeper: mends Docker's lost reads of the overlay's names
After=docker.service

[Service]
ExecStart=/usr/bin/env PYTHONPATH={REMOTE_LIB} python3 -m overlaylab.hostops {" ".join(argv)}
Restart=always
RestartSec=2s
# A stop must not wait on what the keeper runs: SIGTERM to the keeper alone, SIGKILL to the
# rest (an attached `docker run` passes SIGTERM to a busybox PID 1, which ignores it), and
# never longer than 10 s (docker-down gives `systemctl disable --now` 60 s).
KillMode=mixed
TimeoutStopSec=10s

[Install]
WantedBy=multi-user.target
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


# --- backups -----------------------------------------------------------------------------------


def save_original(path: Path, unit: str) -> None:
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


def restore_original(path: Path, unit: str) -> dict[str, Any] | None:
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


def unit_back(unit: str, meta: dict[str, Any]) -> None:
    run(["systemctl", "enable" if meta["enabled"] else "disable", unit], check=False)
    if meta["active"]:
        # Blocking: the host's own service (Debian's single-member etcd) is ready on its own.
        run(["systemctl", "restart", unit], check=False, timeout=120)
    else:
        run(["systemctl", "stop", unit], check=False)


def dropin(path: Path, text: str | None) -> None:
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


# --- etcd from the distribution ----------------------------------------------------------------


def apt_candidate(package: str) -> str | None:
    """The version apt would install (``3.4.23-4+b4``), or None (no apt, no such package)."""
    if shutil.which("apt-cache") is None:
        return None
    out = run(["apt-cache", "policy", package], check=False).stdout
    m = re.search(r"^\s*Candidate:\s*(\S+)", out, re.MULTILINE)
    if m is None or m.group(1) == "(none)":
        return None
    return m.group(1)


def apt_installed(package: str) -> str:
    out = run(["dpkg-query", "-W", "-f=${Version}", package], check=False)
    return out.stdout.strip() if out.returncode == 0 else ""


def install_etcd() -> None:
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


def purge_etcd() -> None:
    """Undo ``install_etcd``: purge the package, and its data dir if there was none before."""
    meta = json.loads(INSTALLED_ETCD.read_text())
    run(["apt-get", "purge", "-y", meta["package"]], check=False, timeout=300, env=APT_ENV)
    if not meta.get("hadData"):
        shutil.rmtree("/var/lib/etcd", ignore_errors=True)
    INSTALLED_ETCD.unlink()
    with contextlib.suppress(OSError):
        STATE.rmdir()
    log(f"purged {meta['package']}, which this lab had installed")
