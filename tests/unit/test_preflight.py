"""Versions and preconditions are refused before anything is created, in one line with the fix."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from overlaylab.errors import EtcdError, PreflightError
from overlaylab.hosts import etcdcheck, versions
from overlaylab.hosts.proc import log_error
from tests.labtools import require_root

PROJECT_DIR = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "text", ["Docker version 20.10.24+dfsg1, build 5d6db84", "Docker version 17.09.0-ce, build x"]
)
def test_docker_before_23_is_accepted(text: str) -> None:
    versions.check_docker_version(text)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Docker version 23.0.1, build a5ee5b1", "23.0"),
        ("Docker version 28.2.2, build e6534b4", "28.2"),
    ],
)
def test_docker_23_or_later_is_refused_naming_the_fix(text: str, shown: str) -> None:
    with pytest.raises(PreflightError, match=f"Docker {shown} has no --cluster-store") as info:
        versions.check_docker_version(text)
    assert "docker.io 20.10" in str(info.value)


@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_etcd_with_v2_is_accepted(version: str) -> None:
    versions.check_etcd_version(version)


@pytest.mark.parametrize("version", ["3.6", "3.3"])
def test_etcd_without_v2_support_is_refused(version: str) -> None:
    with pytest.raises(PreflightError, match=f"etcd {version} is not supported"):
        versions.check_etcd_version(version)


def test_etcd_version_is_read_from_its_banner() -> None:
    assert versions.parse_etcd_version("etcd Version: 3.4.23\nGit SHA: x\n") == "3.4"


@pytest.fixture
def fake_bin() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="fakebin-"))
    try:
        yield d
    finally:
        shutil.rmtree(d)


def _fake(d: Path, name: str, output: str) -> None:
    (d / name).write_text(f"#!/bin/sh\necho '{output}'\n")
    (d / name).chmod(0o755)


def _hostops(args: list[str], path_first: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{path_first}:{os.environ['PATH']}"}
    return subprocess.run(
        [sys.executable, "-m", "overlaylab.hostops", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=PROJECT_DIR,
    )


def test_preflight_refuses_docker_24_in_one_line(fake_bin: Path) -> None:
    require_root()
    _fake(fake_bin, "dockerd", "Docker version 24.0.7, build afdd53b")
    res = _hostops(["preflight"], fake_bin)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        "error: Docker 24.0 has no --cluster-store (removed in 23.0): install Docker < 23, "
        "e.g. Debian 12's docker.io 20.10 or docker-ce 5:20.10.*"
    ]


def test_preflight_refuses_etcd_3_6(fake_bin: Path) -> None:
    require_root()
    _fake(fake_bin, "etcd", "etcd Version: 3.6.1")
    res = _hostops(["preflight"], fake_bin)
    assert res.returncode == 1
    assert "etcd 3.6 is not supported" in res.stderr and "install etcd 3.4 or 3.5" in res.stderr


def test_docker_up_refuses_docker_24_before_creating_anything(
    fake_bin: Path, tmp_path: Path
) -> None:
    _fake(fake_bin, "dockerd", "Docker version 24.0.7, build afdd53b")
    host_dir = tmp_path / "host"
    res = _hostops(
        [
            "docker-up",
            "--netns",
            "nope",
            "--hostname",
            "h",
            "--host-dir",
            str(host_dir),
            "--cluster-store",
            "etcd://127.0.0.1:1",
            "--advertise",
            "127.0.0.1:2375",
            "--etcd-endpoint",
            "http://127.0.0.1:1",
            "--lab-id",
            "x",
            "--bridge",
            "nobr",
        ],
        fake_bin,
    )
    assert res.returncode == 1
    assert "Docker 24.0 has no --cluster-store" in res.stderr
    assert not host_dir.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_health_gate_refuses_an_etcd_without_the_v2_api(tmp_path: Path) -> None:
    """A real etcd 3.4 on loopback, started without --enable-v2: the gate names the flag."""
    client, peer = _free_port(), _free_port()
    data = tmp_path / "etcd"
    proc = subprocess.Popen(
        [
            "etcd",
            "--name",
            "solo",
            "--data-dir",
            str(data),
            "--listen-client-urls",
            f"http://127.0.0.1:{client}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{client}",
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-cluster",
            f"solo=http://127.0.0.1:{peer}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with pytest.raises(EtcdError, match=r"does not serve the v2 API .* --enable-v2=true"):
            etcdcheck.etcd_health(
                endpoints=[f"http://127.0.0.1:{client}"],
                names=["solo"],
                bridge="unused",
                timeout=20,
            )
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_daemon_that_died_at_start_is_reported_by_its_error_line(tmp_path: Path) -> None:
    """dockerd's log starts with deprecation warnings (cluster-store); the message must give
    the line that says why it died."""
    log = tmp_path / "docker.log"
    log.write_text(
        'time="1" level=warning msg="The \\"cluster-store\\" option is deprecated."\n'
        'time="2" level=info msg="Starting up"\n'
        'time="3" level=fatal msg="failed to start daemon: mkdir /d/docker: not a directory"\n'
    )
    assert "not a directory" in log_error(log) and "deprecated" not in log_error(log)
    log.write_text(
        'time="1" level=warning msg="The \\"cluster-store\\" option is deprecated."\n'
        "Unable to get the full path to root (/d/docker): canonical path points to a file\n"
        'time="2" level=info msg="shutting down"\n'
    )
    assert log_error(log).startswith("Unable to get the full path to root")
    log.write_text('time="1" level=info msg="only this"\n')
    assert log_error(log) == 'time="1" level=info msg="only this"'
