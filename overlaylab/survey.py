"""The lab as it is, read while the program runs: what of a local lab that should be there is
not (drift), before the engine plans anything.

The engine believes the stack's state: a Command has no Read, and `pulumi refresh` reads only
the Docker resources, so a dead etcd member, a dead dockerd or a host's namespace gone plan
"unchanged" under both the Pulumi CLI and the stand-in. The program therefore looks itself, with
read-only checks on this machine (files under the lab's state directory, /proc, /run/netns,
the link table, each live daemon's socket, etcd's node keys), and says what it found; it never
changes anything.

A lab counts as expected once its directory exists (``<stateDir>/<lab id>``): a new stack has
none, a rebooted machine still has it (on disk) with nothing running.

An SSH lab counts as expected once its identity file exists (its first `up` wrote it); each
host is asked over SSH, all at once, with the key and known-hosts file the Docker provider uses
(``hostops host-survey``, ``overlaylab/hosts/hostsurvey.py``): its etcd and docker units, its
containers. A host that does not answer is a finding; one whose copy of the package predates
the survey verb (the next `up` copies it) is only named."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overlaylab.config import Container, LabConfig
from overlaylab.hosts.proc import pid_of


@dataclass(frozen=True)
class Finding:
    """One thing that should be there and is not."""

    kind: str  # bridge, netns, etcd, dockerd, keeper, container, node, node-owned, ssh,
    # unsurveyed
    text: str
    host: str = ""
    container: str = ""
    data_lost: bool = False
    """An etcd member's: its data dir is gone too."""

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Survey:
    expected: bool
    """The lab's directory exists: something of this lab was made here before."""
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    """One line per thing that should be there and is not."""

    @property
    def broken(self) -> tuple[Finding, ...]:
        """The findings validation must look at again: all but a names keeper not running,
        which breaks nothing until a container restarts (and is no change to plan: a lab made
        before the keeper existed plans nothing new), and a node key of no host in the stack
        that a daemon may still own (nothing deletes it)."""
        return tuple(
            f for f in self.findings if f.kind not in ("keeper", "node-owned", "unsurveyed")
        )


def survey(cfg: LabConfig) -> Survey:
    """Read-only: what of this lab is missing or dead. Empty for a new lab."""
    if cfg.transport == "ssh":
        return _ssh(cfg)
    if cfg.transport != "local" or not Path(cfg.state_dir, cfg.lab_id).is_dir():
        return Survey(expected=False)
    found: list[Finding] = []
    links = _links()
    if cfg.bridge and cfg.bridge not in links:
        found.append(
            Finding(
                "bridge", f"bridge {cfg.bridge} is gone (the machine rebooted, or it was deleted)"
            )
        )
    for h in cfg.hosts:
        base = Path(cfg.host_dir(h))
        if not base.is_dir():
            continue  # not made yet: this host is new to the lab
        where = f"host {h.name}"
        if not Path("/run/netns", h.netns(cfg.lab_id)).exists():
            gone = f"{where}: its network namespace {h.netns(cfg.lab_id)} is gone"
            found.append(Finding("netns", gone, h.name))
        if pid_of(base / "etcd.pid", "etcd") is None:
            no_data = not (base / "etcd" / "member").is_dir()
            lost = ", and its data is gone" if no_data else ""
            text = f"{where}: its etcd member is not running{lost}"
            found.append(Finding("etcd", text, h.name, data_lost=no_data))
        if pid_of(base / "docker.pid", "dockerd") is None:
            found.append(Finding("dockerd", f"{where}: its dockerd is not running", h.name))
            continue
        if (base / "docker.sock").exists() and pid_of(base / "keeper.pid", "names-keep") is None:
            found.append(
                Finding(
                    "keeper",
                    f"{where}: its names keeper is not running (a container restarted by hand may "
                    "lose the other hosts' names)",
                    h.name,
                )
            )
        found += _containers(cfg, h.name, str(base / "docker.sock"))
    found += _nodes(cfg, skip={f.host for f in found if f.kind in ("etcd", "netns")})
    return Survey(expected=True, findings=tuple(found))


def _nodes(cfg: LabConfig, skip: set[str] | None = None) -> list[Finding]:
    """Node keys of hosts not in the stack, through the first member that answers, but those
    of ``skip`` (found dead: not waited for); none answers: the etcd findings say why. Stale
    ones `up` deletes; ones with a TTL it leaves."""
    from overlaylab.backup import reachable_clients
    from overlaylab.errors import LabError
    from overlaylab.nodekeys import foreign_nodes

    advertises = [cfg.advertise(h) for h in cfg.hosts]
    members = zip(cfg.hosts, reachable_clients(cfg), strict=False)
    for c in (c for h, c in members if h.name not in (skip or set())):
        try:
            return [
                Finding("node" if f.stale else "node-owned", str(f))
                for f in foreign_nodes(c, advertises)
            ]
        except LabError:
            continue
    return []


def _links() -> set[str]:
    res = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=False)
    try:
        return {x["ifname"] for x in json.loads(res.stdout or "[]")}
    except (ValueError, KeyError):
        return set()


def _containers(cfg: LabConfig, host: str, socket: str) -> list[Finding]:
    """This host's containers through its daemon's socket: there, running, on the overlay."""
    from overlaylab.hosts.dockerd import docker_api

    found: list[Finding] = []
    try:
        api = docker_api(socket, timeout=5)
        for c in (c for c in cfg.containers if c.host == host):
            try:
                info = api.inspect_container(c.name)
            except Exception:
                found.append(
                    Finding("container", f"container {c.name} on {host} is gone", host, c.name)
                )
                continue
            what = container_state(cfg, c, info)
            if what:
                found.append(
                    Finding("container", f"container {c.name} on {host} {what}", host, c.name)
                )
    except Exception as e:  # the daemon's pid is alive but its socket does not answer
        found.append(Finding("dockerd", f"host {host}: its dockerd does not answer ({e})", host))
    return found


def container_state(cfg: LabConfig, c: Container, info: dict[str, Any]) -> str:
    """What is wrong with a container as its daemon inspects it ("" for nothing), on the
    networks the stack gives it (the same check as an SSH host's, hosts/hostsurvey.py)."""
    from overlaylab.hosts.hostsurvey import container_problem

    return container_problem(info, cfg.networks_of(c))


#: How long one host's survey over SSH may take (connect, python3, systemctl, docker inspect).
SSH_TIMEOUT = 30.0


def _ssh(cfg: LabConfig) -> Survey:
    """Each host of an SSH lab asked at once, over SSH."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    if not Path(os.path.expanduser(cfg.identity_file)).is_file():
        return Survey(expected=False)  # no `up` has run from here: nothing to look at
    with ThreadPoolExecutor(max_workers=len(cfg.hosts)) as pool:
        per_host = list(pool.map(lambda h: survey_host(cfg, h.name, h.address), cfg.hosts))
    return Survey(expected=True, findings=tuple(f for fs in per_host for f in fs))


def survey_host(cfg: LabConfig, host: str, address: str) -> list[Finding]:
    import os
    import shlex

    from overlaylab.hosts.systemd_files import REMOTE_LIB
    from overlaylab.verbs import HostSurvey

    expected = [
        f"{c.name}={','.join(cfg.networks_of(c))}" for c in cfg.containers if c.host == host
    ]
    remote = f"PYTHONPATH={REMOTE_LIB} python3 -m overlaylab.hostops " + shlex.join(
        HostSurvey(containers=";".join(expected)).argv()
    )
    opts = [os.path.expanduser(o) if o.startswith("~") else o for o in cfg.ssh_opts()]
    argv = ["ssh", *opts, "-o", "ConnectTimeout=10", "-p", str(cfg.ssh_port),
            f"{cfg.ssh_user}@{address}", remote]  # fmt: skip
    where = f"host {host}"
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=SSH_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return [Finding("ssh", f"{where}: does not answer over SSH in {SSH_TIMEOUT:.0f}s", host)]
    said = (res.stderr.strip().splitlines() or [""])[-1]
    if res.returncode == 255:  # ssh's own failure: no connection
        return [Finding("ssh", f"{where}: does not answer over SSH ({said})", host)]
    try:
        if res.returncode != 0:
            raise ValueError(said)
        found = json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        return [
            Finding(
                "unsurveyed",
                f"{where}: not surveyed ({e}; a copy of the package older than the survey: the "
                "next up copies it)",
                host,
            )
        ]
    out = []
    for f in found:
        c = f.get("container", "")
        text = f"container {c} on {host} {f['text']}" if c else f"{where}: {f['text']}"
        out.append(Finding(f["kind"], text, host, c, data_lost=bool(f.get("lost"))))
    return out
