"""What a local lab left on this machine: empty means its teardown was complete."""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import subprocess
from pathlib import Path

from overlaylab.config import LabConfig


def leftovers(cfg: LabConfig, every_lab: bool = False) -> list[str]:
    """Everything of this lab still on the machine: empty means teardown was complete.

    ``every_lab``: also every link named as a lab's are (``ov...``, ``ovbr-...``), whoever
    made it; off by default, since two labs may be up at once (a test of two clusters, a
    developer's lab beside the tests)."""
    found: list[str] = []
    netns = [n.split()[0] for n in _out(["ip", "netns", "list"]).splitlines() if n.strip()]
    found += [f"namespace {n}" for n in netns if n.startswith(f"{cfg.lab_id}-")]
    found += _links(cfg, every_lab)
    found += _rules(cfg)
    base = f"{cfg.state_dir}/{cfg.lab_id}"
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
            stat = (p / "stat").read_text()
        except OSError:
            continue
        cmd = b" ".join(argv).decode(errors="replace")
        # A host verb of this lab still running (a hung one) is a leftover like its daemons;
        # the process that asks (a test) is not.
        ours = (base + "/" in cmd and "pytest" not in cmd) or _is_lab_verb(cfg, argv)
        if ours and int(p.name) != os.getpid():
            found.append(f"process {p.name}: {cmd[:120]}")
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        state = stat[stat.rfind(")") + 2 :].split()[0]
        if state == "Z" and comm in ("etcd", "dockerd", "containerd") and _is_ours(p):
            found.append(f"zombie {comm} {p.name}")
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    found += [f"mount {m.split()[4]}" for m in mounts if m.split()[4].startswith(base + "/")]
    if Path(base).exists():
        found.append(f"directory {base}: {sorted(os.listdir(base))}")
    # `ip netns add` bind-mounts /run/netns on itself; once no namespace is left it is ours
    if any(m.split()[4] == "/run/netns" for m in mounts) and not os.listdir("/run/netns"):
        found.append("mount /run/netns (empty)")
    root = Path(cfg.state_dir)
    if root.is_dir() and not any(root.iterdir()):
        found.append(f"empty directory {root}")
    for h in cfg.hosts:
        for d in Path("/sys/fs/cgroup").glob(f"*/ovl-{cfg.lab_id}-{h.name}"):
            found.append(f"cgroup {d}")
    return found


def _links(cfg: LabConfig, every_lab: bool) -> list[str]:
    """Veths and bridges by type: this lab's by their names, any enslaved to this lab's bridge
    whatever its name, and with ``every_lab`` any named as a lab's are."""
    found: list[str] = []
    veths = {h.veth(cfg.lab_id) for h in cfg.hosts}
    for kind in ("veth", "bridge"):
        for link in json.loads(_out(["ip", "-j", "link", "show", "type", kind]) or "[]"):
            name, master = str(link.get("ifname", "")), link.get("master")
            labs = every_lab and name.startswith("ovbr-" if kind == "bridge" else "ov")
            if kind == "bridge" and (name == cfg.bridge or labs):
                found.append(f"link {name} (bridge)")
            elif kind == "veth" and (name in veths or labs):
                found.append(f"link {name} (veth)")
            elif kind == "veth" and cfg.bridge is not None and master == cfg.bridge:
                found.append(f"link {name} (veth on {cfg.bridge})")
    return found


def _rules(cfg: LabConfig) -> list[str]:
    """iptables rules of this machine that name the lab's bridge or an address range of its
    segment (the lab's verbs add none here: any is someone's leftover, e.g. a test's). Only the
    filter and nat tables: listing another may load its kernel module, a change to the machine."""
    found: list[str] = []
    for table in ("filter", "nat"):
        for rule in _out(["iptables", "-t", table, "-S"]).splitlines():
            if any(_names_lab(cfg, word) for word in rule.split()):
                found.append(f"iptables {table}: {rule}")
    return found


def _names_lab(cfg: LabConfig, word: str) -> bool:
    if cfg.bridge is not None and word == cfg.bridge:
        return True
    try:
        net = ipaddress.ip_network(word, strict=False)
    except ValueError:
        return False
    return isinstance(net, ipaddress.IPv4Network) and net.subnet_of(cfg.segment)


def _is_lab_verb(cfg: LabConfig, argv: list[bytes]) -> bool:
    """A ``python -m overlaylab.hostops <verb>`` of this lab: it names one of the lab's host
    dirs, namespaces, its bridge or its id."""
    words = [a.decode(errors="replace") for a in argv]
    if "overlaylab.hostops" not in words:
        return False
    base = f"{cfg.state_dir}/{cfg.lab_id}/"
    for flag, value in itertools.pairwise(words):
        if (
            value.startswith(base)
            or (flag == "--lab-id" and value == cfg.lab_id)
            or (flag == "--bridge" and value == cfg.bridge)
            or (flag == "--netns" and value.startswith(f"{cfg.lab_id}-"))
        ):
            return True
    return False


def _is_ours(p: Path) -> bool:
    try:
        ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return False
    return ppid == os.getpid()


def _out(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    except FileNotFoundError:  # no iptables on this machine: no rules of it either
        return ""
