"""A systemd host's part of the survey (``overlaylab.survey``): read-only, one JSON line.

Run over SSH by the program as ``python3 -m overlaylab.hostops host-survey --containers
'NAME=NET,NET;NAME=NET'``, once per host and run. It says what of the lab on this host should be
there and is not: the etcd unit not active (and whether its data is gone), the docker unit not
active, each expected container gone, not running or not attached to each of its networks.
Standard library only: real hosts run it with their system python3.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any

from overlaylab.hosts import systemd_files as files


def _active(unit: str) -> bool:
    res = subprocess.run(
        ["systemctl", "is-active", unit], capture_output=True, text=True, check=False
    )
    return res.stdout.strip() == "active"


def container_problem(info: dict[str, Any], networks: Sequence[str]) -> str:
    """What is wrong with a container as its daemon inspects it ("" for nothing): not running,
    or not attached to each of its networks (one detached from one of two is found too)."""
    if not info.get("State", {}).get("Running"):
        return "is not running"
    attached = info.get("NetworkSettings", {}).get("Networks") or {}
    missing = [n for n in networks if n not in attached]
    return f"is not attached to {', '.join(missing)}" if missing else ""


def findings(containers: Sequence[str]) -> list[dict[str, str]]:
    """``containers``: ``NAME=NET,NET`` each. One dict per finding: kind, text, container."""
    out: list[dict[str, str]] = []
    if not _active("etcd"):
        if (files.ETCD_DATA / "member").is_dir():
            out.append({"kind": "etcd", "text": "its etcd member is not running"})
        else:
            text = "its etcd member is not running, and its data is gone"
            out.append({"kind": "etcd", "text": text, "lost": "1"})
    if not _active("docker"):
        out.append({"kind": "dockerd", "text": "its dockerd is not running"})
        return out
    for item in containers:
        name, _, nets = item.partition("=")
        res = subprocess.run(
            ["docker", "inspect", "--type", "container", name],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if res.returncode != 0:
            out.append({"kind": "container", "text": "is gone", "container": name})
            continue
        what = container_problem(json.loads(res.stdout)[0], [n for n in nets.split(",") if n])
        if what:
            out.append({"kind": "container", "text": what, "container": name})
    return out


def host_survey(containers: Sequence[str]) -> None:
    print(json.dumps(findings(containers)), flush=True)
