"""VM-like test hosts: Debian 12 trees booted with systemd-nspawn, running systemd and sshd.

Each host is what a real VM is to this project: systemd as PID 1, Debian's docker.io 20.10
and etcd-server (whose packaged single-member etcd starts at boot), sshd with a key made for
the test, an address on the lab's bridge. The Debian tree is built once with debootstrap
and cached under /var/cache/overlaylab; every host boots from its own copy.

Test tooling: ``python -m tests.vmhosts up|down`` brings two such hosts up for debugging.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overlaylab.hosts import netns, proc
from overlaylab.netrule import RouteGuard
from tests.labtools import Cleanup

CACHE = Path("/var/cache/overlaylab")
BASE = CACHE / "bookworm-vmhost-v1"
HOSTS_DIR = Path("/var/lib/overlaylab-vm")
PACKAGES = (
    "systemd,systemd-sysv,dbus,openssh-server,iproute2,docker.io,etcd-server,etcd-client,"
    "busybox-static,iptables,python3"
)

# Inside nspawn the cgroup v1 controllers come read-only and runc fails with "read-only file
# system"; remounting them before containerd/docker start fixes it (verified on this machine).
CGROUP_FIX = """[Unit]
Description=Remount cgroup v1 controllers read-write for nested containers
DefaultDependencies=no
Before=containerd.service docker.service
After=local-fs.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'mount -o remount,rw /sys/fs/cgroup; for c in pids devices cpuset memory \
cpuacct freezer cpu blkio; do umount -l /sys/fs/cgroup/$c 2>/dev/null; mkdir -p /sys/fs/cgroup/$c; \
mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c; done'

[Install]
WantedBy=multi-user.target
"""


def ensure_base() -> Path:
    """The cached Debian tree with the project-independent host setup; built once (~1 min)."""
    if (BASE / ".ready").exists():
        return BASE
    tmp = BASE.with_suffix(".tmp")
    if not (tmp / ".debootstrapped").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        for attempt in (1, 2):  # a mirror hiccup should not fail a whole CI run
            shutil.rmtree(tmp, ignore_errors=True)
            res = subprocess.run(
                ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm", str(tmp)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                check=False,
            )
            if res.returncode == 0:
                break
            if attempt == 2:
                raise RuntimeError(f"debootstrap failed: {res.stderr.strip()[-500:]}")
        (tmp / ".debootstrapped").write_text("ok\n")
    unit = tmp / "etc/systemd/system/cgroup-rw.service"
    wants_dir = tmp / "etc/systemd/system/multi-user.target.wants"
    for link in ("cgroup-rw.service", "systemd-networkd.service"):
        (wants_dir / link).unlink(missing_ok=True)
    unit.write_text(CGROUP_FIX)
    wants = tmp / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "cgroup-rw.service").symlink_to("/etc/systemd/system/cgroup-rw.service")
    (wants / "systemd-networkd.service").symlink_to("/lib/systemd/system/systemd-networkd.service")
    (tmp / ".ready").write_text("ok\n")
    tmp.rename(BASE)
    return BASE


@dataclass
class VmHost:
    name: str
    machine: str
    address: str
    root: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.root.parent / f"{self.machine}.log"


def make_host(name: str, lab_id: str, address: str, prefixlen: int, pubkey: str) -> VmHost:
    machine = f"{lab_id}-{name}"
    root = HOSTS_DIR / machine / "root"
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["cp", "-a", str(ensure_base()), str(root)], check=True)
        (root / "etc/hostname").write_text(name + "\n")
        (root / "etc/systemd/network/10-lab-host0.network").write_text(
            f"[Match]\nName=host0\n\n[Network]\nAddress={address}/{prefixlen}\n"
            "LinkLocalAddressing=no\n"
        )
        ssh = root / "root/.ssh"
        ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        (ssh / "authorized_keys").write_text(pubkey.strip() + "\n")
        (ssh / "authorized_keys").chmod(0o600)
    except BaseException:
        shutil.rmtree(root.parent, ignore_errors=True)  # a half-made tree; nothing runs in it
        raise
    return VmHost(name, machine, address, root)


def boot(host: VmHost, bridge: str) -> None:
    env = {**os.environ, "SYSTEMD_SECCOMP": "0"}
    with open(host.log, "ab") as out:
        host.proc = subprocess.Popen(
            [
                "systemd-nspawn",
                "-q",
                "-b",
                "-D",
                str(host.root),
                "-M",
                host.machine,
                "--register=no",
                "--keep-unit",
                "--capability=all",
                "--system-call-filter=@keyring bpf",
                f"--network-bridge={bridge}",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_ssh(host: VmHost, guard: RouteGuard, timeout: float = 90) -> None:
    def ready() -> bool:
        if host.proc is not None and host.proc.poll() is not None:
            raise RuntimeError(f"{host.machine} exited at boot; see {host.log}")
        guard.check(host.address)
        try:
            with socket.create_connection((host.address, 22), timeout=0.5) as s:
                return s.recv(4).startswith(b"SSH")
        except OSError:
            return False

    proc.wait_for(f"sshd on {host.machine} ({host.address})", ready, timeout, interval=0.5)


def _init_pid(host: VmHost) -> int | None:
    """PID 1 of the container: the nspawn process's child."""
    if host.proc is None:
        return None
    children = Path(f"/proc/{host.proc.pid}/task/{host.proc.pid}/children")
    with contextlib.suppress(OSError, ValueError):
        return int(children.read_text().split()[0])
    return None


def power_off(host: VmHost, timeout: float = 60) -> None:
    """SIGRTMIN+4 to the host's init is a clean poweroff; SIGKILL the nspawn if it hangs."""
    if host.proc is None or host.proc.poll() is not None:
        return
    init = _init_pid(host)
    if init is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(init, signal.SIGRTMIN + 4)
    try:
        host.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        # The host's init is in its own session: killing nspawn's group alone would leave it,
        # and every process of the host, running. SIGKILL to a PID namespace's init ends them.
        if init is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(init, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(host.proc.pid, signal.SIGKILL)
        host.proc.wait(10)


def crash(host: VmHost, timeout: float = 30) -> None:
    """The host dies at once, as a machine losing power: SIGKILL to its PID namespace's init
    ends every process of it, nothing shuts down cleanly (Docker removes no endpoint)."""
    if host.proc is None or host.proc.poll() is not None:
        return
    init = _init_pid(host)
    if init is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(init, signal.SIGKILL)
    try:
        host.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(host.proc.pid, signal.SIGKILL)
        host.proc.wait(10)


def remove(host: VmHost) -> None:
    """Delete a host's tree; only once its nspawn is gone (never under a running host)."""
    if host.proc is not None and host.proc.poll() is None:
        raise RuntimeError(f"{host.machine} still runs; power it off first")
    shutil.rmtree(host.root.parent, ignore_errors=True)
    with contextlib.suppress(OSError):
        HOSTS_DIR.rmdir()


def detach_all(bridge: str) -> None:
    """Delete any link still enslaved to the bridge (nspawn's vb-* veths when it was killed)."""
    res = subprocess.run(
        ["ip", "-j", "link", "show", "master", bridge], capture_output=True, text=True, check=False
    )
    for link in json.loads(res.stdout or "[]"):
        subprocess.run(["ip", "link", "del", link["ifname"]], check=False)


def keypair(directory: Path) -> tuple[Path, str]:
    key = directory / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "overlay-etcd-test", "-f", str(key)],
        check=True,
    )
    return key, (directory / "id_ed25519.pub").read_text()


READY = "systemctl is-system-running --wait; systemctl is-active docker && systemctl is-active etcd"

# What a host looks like to a lab before and after it: its etcd and docker config, its
# services and the packaged member (HOST_CONFIG); with the lab's own paths, every one of
# which is gone when no lab is on it (HOST_STATE).
HOST_CONFIG = (
    "cat /etc/default/etcd; echo ===; cat /etc/docker/daemon.json 2>&1; "
    "echo ===; systemctl is-active etcd docker; etcdctl member list"
)
LAB_PATHS = (
    "/usr/local/lib/overlaylab /var/lib/overlaylab /var/lib/etcd/overlaylab"
    " /etc/systemd/system/docker.service.d /etc/systemd/system/etcd.service.d"
)
HOST_STATE = f"{HOST_CONFIG}; echo ===; ls {LAB_PATHS} 2>&1 || true"


@dataclass
class Fleet:
    """Booted hosts on a bridge of this machine, reached over SSH with a key of their own."""

    hosts: list[VmHost]
    key: Path
    tmp: Path
    guard: RouteGuard

    def ssh(self, host: str, script: str, check: bool = True) -> str:
        from standin import SSH_BASE

        h = next(x for x in self.hosts if x.name == host)
        self.guard.check(h.address)
        res = subprocess.run(
            [*SSH_BASE, "-i", str(self.key), f"root@{h.address}", script],
            capture_output=True,
            text=True,
            check=False,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"{host}: {script}: {res.stderr}")
        return res.stdout

    def snapshot(self, script: str = HOST_STATE) -> dict[str, str]:
        """Every host as ``script`` shows it, by name."""
        return {h.name: self.ssh(h.name, script) for h in self.hosts}

    def stack_config(self, lab_id: str, names: Sequence[str]) -> dict[str, Any]:
        """An SSH stack on the hosts ``names``, on this fleet's bridge and segment (its hosts'
        /24, the bridge at .1), a container ``test<n>`` on each ``docker-node<n>``, the key
        written into this fleet's directory."""
        address = {h.name: h.address for h in self.hosts}
        segment = self.hosts[0].address.rsplit(".", 1)[0]
        return {
            "lab": {
                "id": lab_id,
                "transport": "ssh",
                "segment": f"{segment}.0/24",
                "bridge": self.guard.bridge,
                "bridgeAddress": f"{segment}.1",
            },
            "ssh": {"user": "root", "identityFile": str(self.tmp / "identity" / "id_ssh")},
            "hosts": [{"name": n, "address": address[n]} for n in names],
            "etcd": {"clusterToken": f"etcd-{lab_id}"},
            "network": {"name": "demo", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1"},
            "containers": [{"name": f"test{n[-1]}", "host": n} for n in names],
        }


@contextlib.contextmanager
def fleet(lab_id: str, bridge: str, segment: str, names: Sequence[str]) -> Iterator[Fleet]:
    """Hosts ``names`` at ``<segment>.10`` and up, booted until docker and etcd are active (as
    a host one deploys to has finished booting); powered off and removed, with the bridge and
    the key, however the body ends.

    Each thing is handed to the cleanup as soon as it exists, and every cleanup step runs even
    when one fails (all failures are raised together at the end). A host that does not power
    off keeps its tree (``remove`` refuses)."""
    ensure_base()
    cleanup = Cleanup()
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f"{lab_id}-"))
        cleanup.add(f"remove {tmp}", lambda: shutil.rmtree(tmp, ignore_errors=True))
        key, pub = keypair(tmp)
        netns.bridge_up(bridge, f"{segment}.1", 24)
        cleanup.add(f"bridge-down {bridge}", lambda: netns.bridge_down(bridge))
        cleanup.add(f"detach the links on {bridge}", lambda: detach_all(bridge))
        hosts: list[VmHost] = []
        for i, n in enumerate(names):
            h = make_host(n, lab_id, f"{segment}.{10 + i}", 24, pub)
            hosts.append(h)
            cleanup.add(f"remove {h.machine}", functools.partial(remove, h))
        for h in hosts:  # added after every remove: all hosts power off first
            cleanup.add(f"power off {h.machine}", functools.partial(power_off, h))
        f = Fleet(hosts, key, tmp, RouteGuard(bridge))
        for h in hosts:
            boot(h, bridge)
        for h in hosts:
            wait_ssh(h, f.guard)
        for h in hosts:
            f.ssh(h.name, READY)
        yield f
    finally:
        cleanup.run()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.vmhosts", description=__doc__.split("\n")[0])
    p.add_argument("action", choices=["base"])
    args = p.parse_args(argv)
    if args.action == "base":
        print(ensure_base())
    return 0


if __name__ == "__main__":
    sys.exit(main())


def identity_gone(tmp: Path) -> list[str]:
    """After a destroy, what is left of the stack's identity directory besides the backups of
    Docker's keys (``<identity dir>/backups``) and the mend generations (``<lab>.mends.json``),
    both kept on purpose (overlaylab/backup.py, mends.py); those are removed here, with the
    directory."""
    d = tmp / "identity"
    if not d.exists():
        return []
    kept = [p for p in d.iterdir() if p.name == "backups" or p.name.endswith(".mends.json")]
    left = sorted(str(p.relative_to(d)) for p in d.iterdir() if p not in kept)
    shutil.rmtree(d / "backups", ignore_errors=True)
    for p in kept:
        if p.is_file():
            p.unlink()
    with contextlib.suppress(OSError):
        d.rmdir()
    return left
