"""Every shipped stack's commands stay byte-identical across a refactor of how they are built:
a running stack then plans no change. ``commands_before.json`` holds, per stack (and for a few
stacks off the defaults, ``VARIANTS``), each ``command:local:Command`` and
``command:remote:Command``'s ``create``, ``delete`` and (where it is a plain string) ``stdin``,
recorded under mocks before the verb records (issue 18, item 4) replaced the hand-written
argv. Machine-specific parts are placeholders: the interpreter, the project's directory and
the package's hash.

Regenerate (only for a change of the wire format that is meant):
``python -m tests.unit.test_commands_unchanged > tests/unit/commands_before.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from overlaylab.stackconfig import PROJECT_DIR, package_hash, raw_from_file
from standin import COMMAND, REMOTE_COMMAND, run_program

BEFORE_FILE = Path(__file__).parent / "commands_before.json"
#: Shipped stacks newer than the recording: nothing of theirs ran before it (the isolation
#: stack of issue 16 is the first written with ``networks``).
NEWER = {"isolation"}
STACKS = sorted(
    name
    for name in (p.name.split(".")[1] for p in (PROJECT_DIR / "stacks").glob("Pulumi.*.yaml"))
    if name not in NEWER
)
#: A shipped stack off the defaults the argv omits (lab.mtu, ports, TLS, etcd.generation).
VARIANTS: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "local+mtu9000+ports": (
        "local",
        {"lab": {"mtu": 9000}, "etcd": {"clientPort": 2479, "peerPort": 2480}},
    ),
    "lab+mtu9000+tls": ("lab", {"lab": {"mtu": 9000}, "etcd": {"tls": True, "peerPort": 2480}}),
    "ha+ports+generation": ("ha", {"etcd": {"clientPort": 2479, "generation": 2}}),
}
KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "c2VjcmV0LWtleS1tYXRlcmlhbA==\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


def _neutral(text: str) -> str:
    return (
        text.replace(sys.executable, "{python}")
        .replace(str(PROJECT_DIR), "{project}")
        .replace(package_hash(), "{package}")
    )


def _config(case: str) -> tuple[str, dict[str, Any]]:
    stack, changes = VARIANTS.get(case, (case, {}))
    raw = raw_from_file(stack)
    for section, values in changes.items():
        raw[section] = {**raw.get(section, {}), **values}
    return stack, raw


def record(case: str) -> dict[str, dict[str, str]]:
    """Per command resource: its create, delete and stdin, as the program declares them."""
    stack, raw = _config(case)
    run = run_program(raw, stack, perform=False, secrets={"sshPrivateKey": KEY})
    assert run.error is None, run.error
    out: dict[str, dict[str, str]] = {}
    for urn, inputs in run.engine.inputs.items():
        typ, name = urn.split("::")[2].rsplit("$", 1)[-1], urn.rsplit("::", 1)[-1]
        if typ not in (COMMAND, REMOTE_COMMAND):
            continue
        out[f"{typ} {name}"] = {
            k: _neutral(inputs[k])
            for k in ("create", "delete", "stdin")
            if isinstance(inputs.get(k), str)
        }
    return out


def _before() -> dict[str, Any]:
    return dict(json.loads(BEFORE_FILE.read_text()))


def test_the_recording_covers_every_shipped_stack() -> None:
    assert sorted(_before()) == sorted([*STACKS, *VARIANTS])


@pytest.mark.parametrize("stack", [*STACKS, *VARIANTS])
def test_a_shipped_stacks_commands_are_byte_identical(stack: str) -> None:
    before, now = _before()[stack], record(stack)
    assert sorted(now) == sorted(before), f"{stack}: other command resources"
    for name, fields in before.items():
        assert now[name] == fields, f"{stack}: {name} changed"


if __name__ == "__main__":
    print(json.dumps({s: record(s) for s in [*STACKS, *VARIANTS]}, indent=1, sort_keys=True))
