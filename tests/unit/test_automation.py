"""The Automation API path's own logic (what can run without a Pulumi CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import automation
from tests.labtools import lab_config

STACK_URN = "urn:pulumi:overlaylab-test-local::overlay-etcd::pulumi:pulumi:Stack::overlay-etcd"
PROVIDER_URN = (
    "urn:pulumi:overlaylab-test-local::overlay-etcd::pulumi:providers:command::default_1_2_1"
)
HOSTS_URN = "urn:pulumi:overlaylab-test-local::overlay-etcd::overlaylab:index:LocalHosts::lab-hosts"
BRIDGE_URN = (
    "urn:pulumi:overlaylab-test-local::overlay-etcd::"
    "overlaylab:index:LocalHosts$command:local:Command::lab-bridge"
)
# The shape of `pulumi stack export`'s "deployment" (apitype.DeploymentV3), trimmed.
DEPLOYMENT = {
    "manifest": {"time": "2026-11-27T00:00:00Z", "version": "v3.200.0"},
    "resources": [
        {"urn": STACK_URN, "custom": False, "type": "pulumi:pulumi:Stack"},
        {
            "urn": PROVIDER_URN,
            "custom": True,
            "id": "0d8f",
            "type": "pulumi:providers:command",
        },
        {
            "urn": HOSTS_URN,
            "custom": False,
            "type": "overlaylab:index:LocalHosts",
            "parent": STACK_URN,
        },
        {
            "urn": BRIDGE_URN,
            "custom": True,
            "id": "lab-bridge-1a2b",
            "type": "command:local:Command",
            "inputs": {"create": "python -m overlaylab.hostops bridge-up", "environment": {}},
            "outputs": {"stdout": "bridge ovbr-seed up"},
            "parent": HOSTS_URN,
            "dependencies": [HOSTS_URN],
            "provider": f"{PROVIDER_URN}::0d8f",
            "deleteBeforeReplace": True,
        },
    ],
}


def test_config_objects_travel_as_json_and_secrets_as_secrets() -> None:
    raw = lab_config(hosts=2)
    values = automation.config_values(raw, {"sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----"})
    assert set(values) == {f"overlay-etcd:{k}" for k in raw} | {"overlay-etcd:sshPrivateKey"}
    assert json.loads(values["overlay-etcd:hosts"].value) == raw["hosts"]
    assert not values["overlay-etcd:hosts"].secret
    assert values["overlay-etcd:sshPrivateKey"].secret


def test_records_come_from_the_exported_state_without_stack_or_providers() -> None:
    records = automation.records_from_deployment(DEPLOYMENT)
    assert [(r.name, r.type, r.custom) for r in records] == [
        ("lab-hosts", "overlaylab:index:LocalHosts", False),
        ("lab-bridge", "command:local:Command", True),
    ]
    bridge = records[1]
    assert bridge.parent == HOSTS_URN and bridge.deps == [HOSTS_URN]
    assert bridge.delete_before_replace
    assert bridge.state == {"stdout": "bridge ovbr-seed up"}


def test_the_engine_is_the_stand_in_without_a_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("OVERLAYLAB_ENGINE", raising=False)
    assert automation.engine() == "standin"
    monkeypatch.setenv("OVERLAYLAB_ENGINE", "automation")
    with pytest.raises(RuntimeError, match="no pulumi CLI is on PATH"):
        automation.engine()


def test_a_cli_on_path_selects_the_automation_api_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cli = tmp_path / "pulumi"  # only looked up, never run here
    cli.write_text("#!/bin/sh\nexit 1\n")
    cli.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("OVERLAYLAB_ENGINE", raising=False)
    assert automation.engine() == "automation"
    monkeypatch.setenv("OVERLAYLAB_ENGINE", "standin")
    assert automation.engine() == "standin"
