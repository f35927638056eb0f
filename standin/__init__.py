"""A test-only stand-in for the Pulumi engine: runs the real program and performs it for real.

No Pulumi CLI or provider plugin can be installed on these machines, so tests cannot run
``pulumi up``. This runs ``__main__.py`` under ``pulumi.runtime.set_mocks`` with a ``Mocks``
that, instead of faking, *does* what each registered resource declares, in the order the
Pulumi runtime registers them (a resource only after what it depends on; independent ones
concurrently, from a thread pool):

- ``command:local:Command``: runs ``create`` with its environment and dir; records stdout;
  destroy runs ``delete``. ``command:remote:Command`` and ``CopyToRemote``: the same over ssh.
- ``pulumi:providers:docker``: remembers its ``host``.
- ``docker:index/remoteImage:RemoteImage``, ``.../network:Network``, ``.../container:Container``:
  the same operation through Docker's Engine API on that provider's daemon, with exactly the
  declared arguments.

Anything else, or any input it does not implement, is refused, so it can never silently drop
what the program declares. As the engine: after a failed step no new step starts (in `up`
and in destroy); the state file is written after every step, with the operations in flight;
secret outputs reach it only as references (their values in a 0600 file beside it). Destroy
runs in reverse dependency order (dependents first, independent ones concurrently).

Modules, each one concern:

- ``state``: the Record of a resource, the state file, ``unwrap`` of secrets;
- ``ops``: a resource type's table entry (inputs, create, delete), its Context, the failures;
- ``commands``: pulumi-command's resources (local, over ssh, ssh keys);
- ``docker_ops``: pulumi-docker's resources (provider, image, network, container; tunnels);
- ``engine``: registration, the ``Mocks`` and its monitor, the table of types;
- ``executor``: destroy in reverse dependency order;
- ``program``: running ``__main__.py`` under the engine, and its ``Run``;
- ``reaper``: the lab daemons' parent process; ``cli``: the command line (``python -m
  standin up|down|preview --stack local``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from overlaylab.stackconfig import PROJECT
    from standin.commands import COMMAND, COPY_TO_REMOTE, REMOTE_COMMAND, SSH_BASE
    from standin.docker_ops import CONTAINER, DOCKER_PROVIDER, NETWORK, REMOTE_IMAGE
    from standin.engine import RealEngine
    from standin.executor import destroy
    from standin.ops import ResourceFailed, UnsupportedResource
    from standin.program import PROJECT_DIR, Run, run_program
    from standin.reaper import become_subreaper
    from standin.state import Record

#: Where each name of the package comes from: loaded on first use, so that `python -m
#: standin` reaches its SIGINT handler (standin/__main__.py) before the heavy imports.
_FROM = {
    "PROJECT": "overlaylab.stackconfig",
    **dict.fromkeys(
        ("COMMAND", "COPY_TO_REMOTE", "REMOTE_COMMAND", "SSH_BASE"), "standin.commands"
    ),
    **dict.fromkeys(
        ("CONTAINER", "DOCKER_PROVIDER", "NETWORK", "REMOTE_IMAGE"), "standin.docker_ops"
    ),
    "RealEngine": "standin.engine",
    "destroy": "standin.executor",
    **dict.fromkeys(("ResourceFailed", "UnsupportedResource"), "standin.ops"),
    **dict.fromkeys(("PROJECT_DIR", "Run", "run_program"), "standin.program"),
    "become_subreaper": "standin.reaper",
    "Record": "standin.state",
}


def __getattr__(name: str) -> Any:
    if name not in _FROM:
        raise AttributeError(f"module 'standin' has no attribute {name!r}")
    value = getattr(importlib.import_module(_FROM[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "COMMAND",
    "CONTAINER",
    "COPY_TO_REMOTE",
    "DOCKER_PROVIDER",
    "NETWORK",
    "PROJECT",
    "PROJECT_DIR",
    "REMOTE_COMMAND",
    "REMOTE_IMAGE",
    "SSH_BASE",
    "RealEngine",
    "Record",
    "ResourceFailed",
    "Run",
    "UnsupportedResource",
    "become_subreaper",
    "destroy",
    "run_program",
]
