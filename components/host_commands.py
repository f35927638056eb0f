"""The Pulumi side of the host seam: a Command that runs one of ``overlaylab.hostops``' verbs.

Components ask this for commands instead of writing shell themselves, so the same component
code can target another transport (SSH) by swapping this one object.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
from pulumi_command import local


@dataclass(frozen=True)
class LocalHostCommands:
    """Runs hostops verbs on this machine with ``python`` and the project on PYTHONPATH."""

    python: str
    project_dir: str

    def argv(self, module: str, args: Sequence[str]) -> str:
        return shlex.join([self.python, "-m", module, *args])

    def command(
        self,
        name: str,
        create: Sequence[str],
        delete: Sequence[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
        module: str = "overlaylab.hostops",
        triggers: Sequence[pulumi.Input[object]] | None = None,
    ) -> local.Command:
        return local.Command(
            name,
            create=self.argv(module, create),
            delete=self.argv(module, delete) if delete is not None else None,
            environment={"PYTHONPATH": self.project_dir, "PYTHONUNBUFFERED": "1"},
            dir=self.project_dir,
            triggers=list(triggers) if triggers is not None else None,
            opts=opts,
        )
