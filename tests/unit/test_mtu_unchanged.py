"""lab.mtu changes nothing on a stack that does not set it: every shipped stack's network keeps
the inputs it had before MTU became config, so ``preview`` shows it "same" (a Network is
replaced on any change of its inputs, with every container on it).

``pre_mtu_inputs.json`` was recorded under mocks from commit de85346 (the last one before
``lab.mtu`` reached the program): per stack, the network's inputs and the hostops arguments of
the commands that MTU touches (bridge-up, host-up, preflight, hosts-unique).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from overlaylab.stackconfig import raw_from_file
from standin import run_program
from standin.diff import COMMAND, NETWORK, REMOTE_COMMAND, Options, diff

#: Shipped stacks written after MTU became config (issue 16's isolation stack): no before.
NEWER = {"isolation"}
BEFORE: dict[str, Any] = json.loads((Path(__file__).parent / "pre_mtu_inputs.json").read_text())
KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "c2VjcmV0LWtleS1tYXRlcmlhbA==\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


def _hostops_args(create: str) -> list[str]:
    argv = create.split() if "PYTHONPATH=" in create else shlex.split(create)
    return argv[argv.index("overlaylab.hostops") + 1 :]


def _now(stack: str) -> tuple[dict[str, Any], dict[str, tuple[str, list[str]]]]:
    """The network's inputs and, per command name of BEFORE, its type and hostops arguments."""
    run = run_program(raw_from_file(stack), stack, perform=False, secrets={"sshPrivateKey": KEY})
    assert run.error is None, run.error
    network: dict[str, Any] = {}
    commands: dict[str, tuple[str, list[str]]] = {}
    for urn, inputs in run.engine.inputs.items():
        typ, name = urn.split("::")[2].rsplit("$", 1)[-1], urn.rsplit("::", 1)[-1]
        if typ == NETWORK:
            network = dict(inputs)
        elif name in BEFORE[stack]["commands"]:
            commands[name] = (typ, _hostops_args(inputs["create"]))
    return network, commands


def test_the_recording_covers_every_shipped_stack() -> None:
    shipped = {p.name.split(".")[1] for p in (Path(__file__).parents[2] / "stacks").iterdir()}
    assert set(BEFORE) == shipped - NEWER


@pytest.mark.parametrize("stack", sorted(BEFORE))
def test_a_shipped_stacks_network_stays_the_same(stack: str) -> None:
    network, _ = _now(stack)
    assert network == BEFORE[stack]["network"], f"{stack}: the network's inputs changed"
    assert "options" not in network
    step = diff(NETWORK, BEFORE[stack]["network"], network, Options(), name="overlay-network")
    assert step.kind == "same", f"{stack}: {step}"


@pytest.mark.parametrize("stack", sorted(BEFORE))
def test_a_shipped_stacks_host_commands_change_only_where_meant(stack: str) -> None:
    """Local stacks: bridge-up and host-up as before (no --mtu at 1500). SSH stacks: each
    preflight gains --address (an update in place: a read-only check re-runs), hosts-unique
    stays as it was at lab.mtu 1500."""
    _, commands = _now(stack)
    hosts = {h["name"]: h["address"] for h in raw_from_file(stack)["hosts"]}
    assert set(commands) == set(BEFORE[stack]["commands"])
    for name, (typ, args) in commands.items():
        before = BEFORE[stack]["commands"][name]
        if typ == REMOTE_COMMAND and args[0] == "preflight":
            host = name.removeprefix("lab-").removesuffix("-preflight")
            assert args == [*before, "--address", hosts[host]], name
            old, new = {"create": shlex.join(before)}, {"create": shlex.join(args)}
            assert diff(REMOTE_COMMAND, old, new, Options(), name=name).kind == "update"
        else:
            assert typ == COMMAND, name
            assert args == before, f"{stack}: {name} changed: {before} -> {args}"
