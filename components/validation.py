"""Validation: the post-deploy step that runs the validator last and fails ``up`` if it fails."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.host_commands import HostCommands


@dataclass(frozen=True)
class ValidationArgs:
    spec: dict[str, Any]
    after: Sequence[pulumi.Resource]
    triggers: Sequence[pulumi.Input[Any]]
    commands: HostCommands
    timeout: float = 60
    tests: Sequence[str] = ()
    """``--test`` patterns (overlaylab.validate.catalogue); none: every test, and the run's
    inputs are those of a stack written before the catalogue."""


def validator_argv(args: ValidationArgs) -> list[str]:
    """The validator's arguments: every test unless ``args.tests`` selects (``--test``)."""
    return [
        "--spec-json",
        json.dumps(args.spec, sort_keys=True),
        "--timeout",
        str(args.timeout),
        "--in-up",
        *(a for pattern in args.tests for a in ("--test", pattern)),
    ]


class Validation(pulumi.ComponentResource):
    """Runs ``python -m overlaylab.validate`` on the stack's spec."""

    run: pulumi.CustomResource
    """The validator run; its stdout is the report."""
    report: pulumi.Output[str]
    """The validator's summary."""

    def __init__(
        self, name: str, args: ValidationArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("overlay-etcd:validation:Validation", name, None, opts)
        # Triggers on the ids of what it checks: any replaced container or network re-validates.
        self.run = args.commands.command(
            f"{name}-run",
            validator_argv(args),
            module="overlaylab.validate",
            triggers=args.triggers,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.after)),
        )
        self.report = self.run.stdout  # type: ignore[attr-defined]
        self.register_outputs({"report": self.report})
