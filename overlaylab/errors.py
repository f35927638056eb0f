"""Errors of the lab, one tree.

    LabError                  anything this project reports to its user
    ├── ConfigError           the stack's config is invalid; nothing was created
    ├── PreflightError        this machine or a host cannot run the lab (versions, tools, root)
    ├── NetworkRuleError      a lab address is not routed through the lab's bridge: no traffic sent
    └── HostCommandError      a command on a host failed (carries argv, exit code, stdout, stderr)
        └── EtcdError / DockerError  a daemon did not come up or answered wrongly
            └── EtcdRefused          nothing listens at that etcd's address (it is stopped)

Every message is one line that says what is wrong and, where there is one, how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence


class LabError(Exception):
    """Base of every error this project reports."""


class ConfigError(LabError):
    """The stack's config is invalid."""


class PreflightError(LabError):
    """A precondition of the lab does not hold on this machine or host."""


class NetworkRuleError(LabError):
    """A lab address would be reached through something other than the lab's bridge."""


class HostCommandError(LabError):
    """A command on a host failed."""

    def __init__(
        self,
        message: str,
        argv: Sequence[str] = (),
        returncode: int | None = None,
        stdout: str = "",
        stderr: str = "",
    ) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(message)

    def __str__(self) -> str:
        msg = super().__str__()
        if self.argv:
            msg += f" [command: {' '.join(self.argv)}; exit {self.returncode}]"
        tail = (self.stderr or self.stdout).strip().splitlines()[-3:]
        if tail:
            msg += " " + " | ".join(tail)
        return msg


class EtcdError(HostCommandError):
    """etcd did not come up, or answered something unexpected."""


class EtcdRefused(EtcdError):
    """The connection to an etcd member was refused: no process listens there."""


class DockerError(HostCommandError):
    """dockerd did not come up, or answered something unexpected."""
