"""Which Docker and etcd the lab can use, read from their ``--version`` output."""

from __future__ import annotations

import re

from overlaylab.errors import PreflightError

DOCKER_MAX_MAJOR = 23  # --cluster-store was removed in Docker 23.0
ETCD_SUPPORTED = ("3.4", "3.5")  # 3.6 removed the v2 API that Docker's libkv speaks


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
