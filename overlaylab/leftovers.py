"""What a local lab left on this machine: empty means its teardown was complete."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from overlaylab.config import LabConfig


def leftovers(cfg: LabConfig) -> list[str]:
    """Everything of this lab still on the machine: empty means teardown was complete."""
    found: list[str] = []
    netns = [n.split()[0] for n in _out(["ip", "netns", "list"]).splitlines() if n.strip()]
    found += [f"namespace {n}" for n in netns if n.startswith(f"{cfg.lab_id}-")]
    links = {x["ifname"] for x in json.loads(_out(["ip", "-j", "link", "show"]) or "[]")}
    wanted = {cfg.bridge} | {h.veth(cfg.lab_id) for h in cfg.hosts}
    found += [f"link {n}" for n in sorted(links & wanted)]
    base = f"{cfg.state_dir}/{cfg.lab_id}"
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (p / "stat").read_text()
        except OSError:
            continue
        if base + "/" in cmd and "pytest" not in cmd and "overlaylab.hostops" not in cmd:
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


def _is_ours(p: Path) -> bool:
    try:
        ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return False
    return ppid == os.getpid()


def _out(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout
