"""The survey of an SSH lab: the host side (hosts/hostsurvey.py) over fake ``systemctl`` and
``docker`` commands on PATH, and the program side (survey.survey_host) over a fake ``ssh`` that
runs the host side here, answers nothing (exit 255), or is an older package (exit 2)."""

from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from overlaylab.config import parse
from overlaylab.hosts import hostsurvey
from overlaylab.survey import survey_host

RUNNING = {"State": {"Running": True}, "NetworkSettings": {"Networks": {"demo": {}}}}


def _tool(bindir: Path, name: str, body: str) -> None:
    p = bindir / name
    p.write_text("#!/bin/bash\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def bindir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    monkeypatch.setenv("PATH", f"{d}:{os.environ['PATH']}")
    return d


def _host(bindir: Path, etcd: str, docker: str, containers: dict[str, Any]) -> None:
    _tool(bindir, "systemctl", f'[ "$2" = etcd ] && echo {etcd} || echo {docker}\n')
    cases = "".join(f"  {n}) echo '{json.dumps([info])}';;\n" for n, info in containers.items())
    _tool(bindir, "docker", f'case "${{@: -1}}" in\n{cases}  *) exit 1;;\nesac\n')


def test_a_healthy_host_has_nothing_to_report(bindir: Path) -> None:
    _host(bindir, "active", "active", {"test2": RUNNING})
    assert hostsurvey.findings(["test2=demo"]) == []


def test_each_thing_missing_on_a_host_is_one_finding(
    bindir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(hostsurvey.files, "ETCD_DATA", tmp_path / "no-data")
    stopped = {**RUNNING, "State": {"Running": False}}
    _host(bindir, "inactive", "active", {"test2": stopped, "both": RUNNING})
    assert hostsurvey.findings(["test2=demo", "gone=demo", "both=demo,backend"]) == [
        {
            "kind": "etcd",
            "text": "its etcd member is not running, and its data is gone",
            "lost": "1",
        },
        {"kind": "container", "text": "is not running", "container": "test2"},
        {"kind": "container", "text": "is gone", "container": "gone"},
        {"kind": "container", "text": "is not attached to backend", "container": "both"},
    ]
    _host(bindir, "active", "failed", {})
    assert hostsurvey.findings(["test2=demo"]) == [
        {"kind": "dockerd", "text": "its dockerd is not running"}
    ]


@pytest.fixture
def cfg(seed_config: dict[str, Any], tmp_path: Path) -> Any:
    raw = copy.deepcopy(seed_config)
    raw["lab"] = {**raw["lab"], "transport": "ssh"}
    raw["ssh"] = {**raw.get("ssh", {}), "identityFile": str(tmp_path / "id_ssh")}
    raw["sshPrivateKey"] = "-----BEGIN OPENSSH PRIVATE KEY-----\n(the fake ssh reads none)\n"
    return parse(raw, "test")


def test_the_program_asks_each_host_over_ssh_and_names_what_it_says(bindir: Path, cfg: Any) -> None:
    """The fake ssh checks the remote command it is given (the verb and the host's containers
    with their networks) and answers as the host side would."""
    h = cfg.hosts[1]
    answer = [{"kind": "container", "text": "is not running", "container": "test2"}]
    _tool(bindir, "ssh", f'[[ "${{@: -1}}" == *"host-survey --containers test2=demo" ]] && '
                         f"echo '{json.dumps(answer)}' || exit 3\n")  # fmt: skip
    got = survey_host(cfg, h.name, h.address)
    assert [(f.kind, f.text, f.container) for f in got] == [
        ("container", f"container test2 on {h.name} is not running", "test2")
    ]


def test_a_host_that_does_not_answer_is_a_finding_and_an_old_package_is_only_named(
    bindir: Path, cfg: Any
) -> None:
    h = cfg.hosts[0]
    _tool(bindir, "ssh", "echo 'ssh: connect to host x port 22: No route to host' >&2; exit 255\n")
    (gone,) = survey_host(cfg, h.name, h.address)
    assert gone.kind == "ssh" and "does not answer over SSH (ssh: connect to host" in gone.text
    _tool(bindir, "ssh", "echo 'hostops: error: invalid choice: host-survey' >&2; exit 2\n")
    (old,) = survey_host(cfg, h.name, h.address)
    assert old.kind == "unsurveyed" and "the next up copies it" in old.text
