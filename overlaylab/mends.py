"""Mend generations: how a plain `up` mends what the survey found broken, under both engines.

A Command has no Read and `pulumi refresh` does nothing for it, so the engine can only learn
that a daemon died from the program. The program surveys the lab (``overlaylab.survey``) and,
for each resource whose thing is broken, raises that resource's *mend generation*. The
generation is an input of the resource, absent while it is 0 (a stack that never drifted keeps
its inputs), so a raised one is a change the engine plans and carries out:

- a replace, where the thing must be made anew: a dead dockerd (its command's ``triggers``; a
  Command is replaced when its triggers change, pulumi-command v1.2.1
  ``provider/pkg/provider/local/command.go`` ``Triggers ... replaceOnChanges``), its serf check,
  its image import and image (``triggers``) and the containers on it (a ``label``; every
  Container input but a few is ForceNew, terraform-provider-docker v4.5.0
  ``resource_docker_container.go``); a container gone, stopped or detached (its label);
- an update, where the thing's own create adopts what runs and starts what does not: an etcd
  member not running (its ``environment``; an update of a Command without ``update`` runs
  ``create`` again, docs/engine.md "What a program author must know"), which restarts on its
  data, or, its data lost, is removed and added again (``overlaylab.membership.bootstrap``);
- a replace of the bridge or a host's namespace (with its veth and address) where it is gone:
  the machine rebooted, and with it every member and daemon died (each mended as above; the
  members restart on their data, which the disk kept).

A names keeper not running is reported, not mended: a lab made before the keeper existed would
otherwise plan an update of every daemon on its first run under this version.

The generations are kept beside the lab's directory (``<stateDir>/<lab id>.mends.json``; an
SSH lab's beside its identity file, as the backups of Docker's keys are), written by a run
that may change something (never by a preview) before any resource registers. The next run
finds nothing broken and raises nothing: its inputs are the ones the mend left, and it runs
nothing. An `up` that fails before its mend ran raises
the generation again and plans the same mend. The file outlives a destroy and a rebuild on
purpose: a rebuild's resources are made with the generations the program read, and a file that
went with them would plan every mended resource's replace on the next run. Deleted by hand, it
costs one replace of each resource it had mended.

A namespace deleted while its daemons still run (they keep it alive, out of reach) is made anew,
but the daemons that run in the old one are not found dead and stay there: the validation then
fails; destroy the stack and bring it up. An SSH host that does not answer is reported (and
validated again), not mended.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from overlaylab.config import LabConfig
from overlaylab.survey import Survey

FILE = "mends.json"
#: The survey's finding kinds a run mends (the others it reports, and validates again).
MENDED = frozenset({"bridge", "netns", "dockerd", "container", "etcd", "node"})
#: The label a mended container carries (absent at generation 0).
LABEL = "overlaylab.mend"
#: The environment variable a mended command carries (absent at generation 0).
ENV = "OVERLAYLAB_MEND"


#: The lab's bridge (LocalHosts).
BRIDGE = "lab-bridge"


def host(name: str) -> str:
    """A local host's namespace, veth and address (LocalHosts)."""
    return f"lab-{name}"


def daemon(host: str) -> str:
    return f"docker-{host}-dockerd"


def serf(host: str) -> str:
    return f"serf-{host}"


def image_import(host: str) -> str:
    return f"test-{host}-import"


def image(host: str) -> str:
    return f"test-{host}-image"


def container(name: str) -> str:
    return f"test-{name}"


def member(host: str) -> str:
    return f"etcd-{host}"


#: The validator's command: a run that finds anything broken validates again (a replace).
VALIDATE = "validate-run"


@dataclass(frozen=True)
class Mends:
    """Per resource name (``<name>`` for a replace, ``<name>:update`` for an update), its
    mend generation, and which of them this run raised."""

    generations: Mapping[str, int] = field(default_factory=dict)
    raised: tuple[str, ...] = ()

    def of(self, name: str) -> int:
        return int(self.generations.get(name, 0))

    def triggers(self, name: str) -> list[str]:
        """For a ``triggers`` list: nothing at generation 0."""
        return list(self.keyed(name).values())

    def keyed(self, name: str) -> dict[str, str]:
        """For a ``triggers`` map: nothing at generation 0."""
        n = self.of(name)
        return {"mend": f"mend {n}"} if n else {}

    def environment(self, name: str) -> dict[str, str]:
        n = self.of(f"{name}:update")
        return {ENV: str(n)} if n else {}

    def said(self) -> str:
        """One line: what this run mends, and how."""
        parts = []
        for r in (r for r in self.raised if r != VALIDATE):
            name, _, how = r.partition(":")
            parts.append(f"{name} ({'update' if how else 'replace'})")
        return ", ".join(parts)


def broken(s: Survey, cfg: LabConfig) -> list[str]:
    """The resources to mend for what the survey found, in the program's order."""
    names: list[str] = []
    for f in s.findings:
        if f.kind == "bridge":
            names.append(BRIDGE)
        elif f.kind == "netns":
            names.append(host(f.host))
        elif f.kind == "dockerd":
            names += [daemon(f.host), serf(f.host)]
            if cfg.image_source == "import":
                names.append(image_import(f.host))
            names.append(image(f.host))
            names += [container(c.name) for c in cfg.containers if c.host == f.host]
        elif f.kind == "container":
            names.append(container(f.container))
        elif f.kind == "etcd":
            names.append(f"{member(f.host)}:update")
    if s.broken:  # mended or not, what was found broken is validated again in this run
        names.append(VALIDATE)
    return list(dict.fromkeys(names))


def path(cfg: LabConfig) -> Path:
    """Beside the lab's directory (local), or beside the identity file (SSH), as the backups."""
    if cfg.transport == "ssh":
        return Path(os.path.expanduser(cfg.identity_file)).parent / f"{cfg.lab_id}.{FILE}"
    return Path(cfg.state_dir) / f"{cfg.lab_id}.{FILE}"


def load(cfg: LabConfig) -> dict[str, int]:
    try:
        raw = json.loads(path(cfg).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): int(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def advance(cfg: LabConfig, s: Survey, *, write: bool) -> Mends:
    """The generations for this run: the kept ones, each broken resource's raised by one.
    Written back only when ``write`` (a run that may change something) and something was
    raised."""
    kept = load(cfg)
    raised = tuple(broken(s, cfg))
    gens = {**kept, **{r: kept.get(r, 0) + 1 for r in raised}}
    if write and raised:
        p = path(cfg)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(gens, sort_keys=True, indent=1))
        os.replace(tmp, p)
    return Mends(gens, raised)


def every_member_lost(s: Survey, cfg: LabConfig) -> bool:
    """Every member of the stack's cluster is down with its data gone: no cluster is left
    anywhere for a member to split from."""
    lost = {f.host for f in s.findings if f.kind == "etcd" and f.data_lost}
    return bool(cfg.hosts) and lost == {h.name for h in cfg.hosts}


def refound(cfg: LabConfig) -> str:
    """Let every member found the cluster again (local lab): each marker forgets that its
    member ran (``overlaylab.hosts.member``), so the members' creates found it from the static
    membership, a cluster without Docker's keys. One line, for the run's output."""
    if cfg.transport != "local":
        return (
            "every etcd member lost its data; over SSH the members are not founded again by "
            "`up`: follow docs/troubleshooting.md#the-drill-a-lab-test-local-stack-two-hosts"
        )
    for h in cfg.hosts:
        marker = Path(cfg.host_dir(h)) / "etcd-cluster.json"
        try:
            record = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        record.pop("ran", None)
        marker.write_text(json.dumps(record))
    return (
        "every etcd member lost its data: no cluster is left to split from, so this up founds "
        "it again (a new cluster, without Docker's keys) and validation fails until they are "
        f"back: python -m overlaylab.backup restore --stack {cfg.lab_id} (docs/troubleshooting"
        ".md#docker-keys-backup-restore-and-the-drill)"
    )
