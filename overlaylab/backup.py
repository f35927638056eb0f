"""Docker's keys, saved and put back: the etcd v2 keyspace under ``/docker``.

Docker 20.10 (libkv) writes its cluster state through etcd's **v2** API: the networks, their
endpoints and endpoint counts, the overlay driver's VNIs, IPAM's pools and bitmaps, each
daemon's node registration. An etcd v3 snapshot (``etcdctl snapshot save``) does not hold the
v2 store (etcd-io/etcd#6363), so a cluster rebuilt from one comes back without any of it. This
module saves that keyspace as JSON (every key under ``/docker``, recursive, with its value, its
directories and its TTL) and writes it back into a cluster.

Where: beside the stack's own state on the machine that runs the program (see
:func:`backup_dir`), newest last, the last :data:`KEEP` kept. When: ``up`` saves one before it
changes anything (``__main__.py``, :func:`before_change`), and ``save`` does on demand.

``python -m overlaylab.backup list|save|restore --stack S``: see :func:`main`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overlaylab.config import LabConfig
from overlaylab.errors import LabError
from overlaylab.etcd import EtcdClient, V2Node

ROOT = "/docker"
#: Each daemon's registration (``/docker/nodes/<advertise>``): written with a TTL and refreshed
#: every heartbeat by the daemon that owns it (libkv discovery), so never restored: a running
#: daemon writes its own again within a heartbeat, and one that does not run must not appear.
NODES = "/docker/nodes"
KEEP = 5
FORMAT = "overlaylab-v2-backup/1"
#: Set by a run that must touch nothing (the stand-in's record-only runs, for unit tests): the
#: program then neither saves a backup nor cleans keys.
RECORD_ONLY = "OVERLAYLAB_RECORD_ONLY"


@dataclass(frozen=True)
class Entry:
    """One node of the keyspace: a directory, or a key with its value and TTL (seconds left)."""

    key: str
    dir: bool
    value: str | None = None
    ttl: int | None = None

    def to_json(self) -> dict[str, Any]:
        if self.dir:
            return {"key": self.key, "dir": True}
        return {"key": self.key, "value": self.value, **({"ttl": self.ttl} if self.ttl else {})}

    @classmethod
    def from_json(cls, obj: Any) -> Entry:
        if not isinstance(obj, dict) or not str(obj.get("key", "")).startswith(ROOT):
            raise ValueError(f"not a key under {ROOT}: {obj!r}")
        ttl = obj.get("ttl")
        return cls(
            str(obj["key"]),
            bool(obj.get("dir")),
            None if obj.get("dir") else str(obj.get("value", "")),
            int(ttl) if ttl else None,
        )

    @property
    def is_node(self) -> bool:
        return self.key == NODES or self.key.startswith(NODES + "/")


def _entries(root: V2Node) -> list[Entry]:
    """Every node under ``/docker`` in tree order (each directory before what it holds),
    siblings by name (etcd lists them in no fixed order)."""
    out: list[Entry] = []

    def visit(n: V2Node) -> None:
        if n.key != ROOT:
            out.append(Entry(n.key, n.dir, None if n.dir else (n.value or ""), n.ttl))
        for child in sorted(n.nodes, key=lambda c: c.key):
            visit(child)

    visit(root)
    return out


def dump(client: EtcdClient) -> list[Entry]:
    """The keyspace under ``/docker`` (empty when there is none). Raises LabError when the
    member cannot be read."""
    root = client.v2_get(ROOT, recursive=True)
    return _entries(root) if root is not None else []


def docker_keys(entries: Sequence[Entry]) -> list[Entry]:
    """Docker's own state in a keyspace: its keys but the node registrations."""
    return [e for e in entries if not e.dir and not e.is_node]


# --- where, and the files -------------------------------------------------------------------


def backup_dir(cfg: LabConfig) -> Path:
    """Beside the stack's own state on the machine that runs the program. A local lab: next to
    its directory, ``<stateDir>/<lab id>.backups`` (not inside it: a destroy removes that
    directory as its hosts leave, and a rebuild may empty it; the backups outlive both). An SSH
    lab: beside its identity file, ``<dir of ssh.identityFile>/backups``, where its
    known_hosts and certificates are too."""
    if cfg.transport == "ssh":
        return Path(os.path.expanduser(cfg.identity_file)).parent / "backups"
    return Path(cfg.state_dir) / f"{cfg.lab_id}.backups"


def lab_exists(cfg: LabConfig) -> bool:
    """Has an `up` made something of this stack here? (A new stack has nothing to back up.)"""
    if cfg.transport == "ssh":
        return Path(os.path.expanduser(cfg.identity_file)).is_file()
    return Path(cfg.state_dir, cfg.lab_id).is_dir()


def listing(directory: Path) -> list[Path]:
    """The backups in ``directory``, oldest first (their names are their UTC times)."""
    return sorted(directory.glob("*Z.json")) if directory.is_dir() else []


@dataclass(frozen=True)
class Backup:
    path: Path
    saved: str
    endpoint: str
    entries: tuple[Entry, ...]

    @classmethod
    def load(cls, path: Path) -> Backup:
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"its format is not {FORMAT}")
            entries = tuple(Entry.from_json(e) for e in data.get("keys", []))
        except (OSError, ValueError, KeyError, TypeError) as e:
            why = f"{path} is not a backup of Docker's keys that can be read: {e}"
            raise LabError(why) from None
        return cls(path, str(data.get("saved", "")), str(data.get("endpoint", "")), entries)

    def networks(self) -> list[str]:
        """``name (id12)`` of each network the backup holds."""
        out = []
        for e in self.entries:
            head, _, net_id = e.key.rpartition("/")
            if head == "/docker/network/v1.0/network" and e.value:
                try:
                    name = json.loads(e.value).get("name", "?")
                except ValueError:
                    name = "?"
                out.append(f"{name} ({net_id[:12]})")
        return out

    def summary(self) -> str:
        keys = docker_keys(self.entries)
        nets = ", ".join(self.networks()) or "none"
        return (
            f"{self.path.name}  saved {self.saved}  {len(keys)} keys, "
            f"{sum(e.dir for e in self.entries)} dirs, networks: {nets}"
        )


def _same(a: Sequence[Entry], b: Sequence[Entry]) -> bool:
    """The same keys, values and directories (TTLs left count down: not compared)."""
    return [(e.key, e.dir, e.value) for e in a] == [(e.key, e.dir, e.value) for e in b]


def write(
    directory: Path,
    entries: Sequence[Entry],
    endpoint: str,
    lab_id: str,
    now: dt.datetime | None = None,
    keep: int = KEEP,
) -> Path | None:
    """Save ``entries`` as the newest backup in ``directory`` and keep the last ``keep``.
    None, and nothing written, when they are what the newest backup holds already (it still is
    the state before the change: a run that changes nothing rotates nothing away)."""
    old = listing(directory)
    if old:
        try:
            if _same(Backup.load(old[-1]).entries, entries):
                return None
        except LabError:
            pass  # an unreadable newest backup is no reason not to save a good one
    now = now or dt.datetime.now(dt.UTC)
    name = now.strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z.json"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / name
    body = {
        "format": FORMAT,
        "lab": lab_id,
        "saved": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "endpoint": endpoint,
        "keys": [e.to_json() for e in entries],
    }
    tmp = directory / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(body, f, indent=1)
    tmp.replace(path)
    for stale in listing(directory)[:-keep] if keep > 0 else []:
        stale.unlink(missing_ok=True)
    return path


# --- reaching the cluster -------------------------------------------------------------------


def clients(cfg: LabConfig, timeout: float = 2.0) -> list[EtcdClient]:
    """One client per member, as the validator reaches them (route-checked on a local lab)."""
    from overlaylab.hosts.pki import client_tls
    from overlaylab.netrule import RouteGuard

    guard = RouteGuard(cfg.bridge) if cfg.transport == "local" and cfg.bridge else None
    tls = client_tls(cfg.pki_dir)
    return [EtcdClient(cfg.client_url(h), guard, timeout=timeout, tls=tls) for h in cfg.hosts]


def reachable_clients(cfg: LabConfig, timeout: float = 2.0) -> list[EtcdClient]:
    """:func:`clients`, or none when they cannot be made (a TLS lab whose client certificate
    cannot be read): for the program's reads, which must not fail a run."""
    try:
        return clients(cfg, timeout)
    except OSError:
        return []


def first_answering(
    members: Sequence[EtcdClient],
) -> tuple[EtcdClient, list[Entry]]:
    """The first member whose ``/docker`` can be read, and what it holds; LabError naming every
    member's failure when none can be read."""
    errors = []
    for c in members:
        try:
            return c, dump(c)
        except LabError as e:
            errors.append(str(e))
    raise LabError("no etcd member could be read: " + "; ".join(errors))


def save(members: Sequence[EtcdClient], directory: Path, lab_id: str) -> tuple[Path | None, str]:
    """Read the keyspace from the first member that answers and save it: (path or None, what
    happened in one line). Raises LabError when no member can be read."""
    client, entries = first_answering(members)
    if not docker_keys(entries):
        kept = listing(directory)
        last = f"; the last backup, {kept[-1]}, is kept" if kept else ""
        return None, f"the cluster holds no Docker keys under {ROOT}: nothing saved{last}"
    path = write(directory, entries, client.endpoint, lab_id)
    if path is None:
        return None, f"Docker's keys are as the newest backup holds them ({listing(directory)[-1]})"
    n = len(docker_keys(entries))
    return path, f"{n} Docker keys saved to {path} (from {client.endpoint})"


def before_change(cfg: LabConfig, members: Sequence[EtcdClient] | None = None) -> tuple[str, bool]:
    """The program's backup before `up` changes anything: (one line, ok). Never raises: a
    cluster that cannot be read is one line (``ok`` False), and `up` goes on."""
    directory = backup_dir(cfg)
    try:
        _, said = save(members if members is not None else clients(cfg), directory, cfg.lab_id)
    except (LabError, OSError) as e:
        return (
            f"backup: Docker's keys were not saved before this run's changes ({e}); the "
            f"backups in {directory} are as they were",
            False,
        )
    return f"backup: {said}", True


# --- restore --------------------------------------------------------------------------------


class Refused(LabError):
    """The target cluster holds Docker's keys already."""


def restore(
    client: EtcdClient, backup: Backup, force: bool = False, say: Callable[[str], None] = print
) -> tuple[int, int]:
    """Write ``backup`` into the cluster ``client`` reaches: directories first, then keys (each
    key's directories exist before it). Node registrations (``/docker/nodes``) are skipped:
    each running daemon writes its own again within a heartbeat, and a node key no daemon
    refreshes would be stale. Any other key with a TTL is written with the TTL it had left
    when saved. Refuses (Refused) when the cluster holds Docker keys already, unless
    ``force``: then the backup's keys are written over them and other keys left as they are.
    Returns (directories made, keys written); says each."""
    present = docker_keys(dump(client))
    if present and not force:
        shown = ", ".join(e.key for e in present[:3])
        raise Refused(
            f"refusing to restore {backup.path.name}: the cluster at {client.endpoint} already "
            f"holds {len(present)} Docker keys ({shown}{', ...' if len(present) > 3 else ''}); "
            "restore into a rebuilt, empty cluster, or pass --force to write the backup's keys "
            "over them"
        )
    made = written = 0
    skipped = [e for e in backup.entries if e.is_node and not e.dir]
    for e in (e for e in backup.entries if e.dir and not e.is_node):
        if client.v2_mkdir(e.key):
            made += 1
            say(f"dir  {e.key}")
    for e in (e for e in backup.entries if not e.dir and not e.is_node):
        client.v2_put(e.key, e.value or "", ttl=e.ttl)
        written += 1
        say(f"key  {e.key}{f' (ttl {e.ttl}s)' if e.ttl else ''}")
    if skipped:
        say(
            f"skipped {len(skipped)} node registrations ({', '.join(e.key for e in skipped)}): "
            "each running daemon writes its own again within its heartbeat"
        )
    say(f"restored {backup.path.name} into {client.endpoint}: {made} dirs, {written} keys")
    return made, written


# --- the command line -----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m overlaylab.backup",
        description="Docker's etcd v2 keys (/docker) of a stack: list, save, restore",
    )
    p.add_argument("verb", choices=("list", "save", "restore"))
    p.add_argument("--stack", required=True, help="the stack (stacks/Pulumi.<stack>.yaml)")
    p.add_argument("--file", help="restore: this backup (a path, or a name in the list)")
    p.add_argument("--force", action="store_true", help="restore over Docker keys present")
    p.add_argument("--endpoint", help="this etcd member (http[s]://ip:port), not the stack's")
    p.add_argument("--dir", help="the backups' directory, not the stack's")
    p.add_argument("--config-file", type=Path, help="this stack file, not stacks/Pulumi.<stack>")
    args = p.parse_args(argv)
    try:
        cfg = _config(args.stack, args.config_file)
        directory = Path(args.dir) if args.dir else backup_dir(cfg)
        if args.verb == "list":
            found = listing(directory)
            if not found:
                print(f"no backups in {directory}")
            for f in found:
                try:
                    print(Backup.load(f).summary())
                except LabError as e:
                    print(f"{f.name}  unreadable: {e}")
            return 0
        if args.endpoint:
            from overlaylab.hosts.pki import client_tls

            members = [EtcdClient(args.endpoint, None, timeout=5, tls=client_tls(cfg.pki_dir))]
        else:
            members = clients(cfg, timeout=5)
        if args.verb == "save":
            _, said = save(members, directory, cfg.lab_id)
            print(said)
            return 0
        backup = Backup.load(_pick(directory, args.file))
        client, _ = first_answering(members)
        restore(client, backup, force=args.force)
        return 0
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


#: Stands for an SSH stack's key, which the stack file does not hold (it is a secret of the
#: stack) and nothing here uses: etcd is reached directly, as the validator reaches it.
_NO_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nunused\n-----END OPENSSH PRIVATE KEY-----\n"


def _config(stack: str, path: Path | None) -> LabConfig:
    from overlaylab.config import parse
    from overlaylab.stackconfig import raw_from_file, stack_file

    raw = raw_from_file(stack, path)
    raw.setdefault("sshPrivateKey", _NO_KEY)
    return parse(raw, str(path or stack_file(stack).name))


def _pick(directory: Path, name: str | None) -> Path:
    if name is None:
        found = listing(directory)
        if not found:
            raise LabError(f"no backups in {directory}: save one first, or pass --file")
        return found[-1]
    path = Path(name)
    if not path.is_file() and (directory / name).is_file():
        path = directory / name
    if not path.is_file():
        raise LabError(f"no backup {name}: list them with `python -m overlaylab.backup list`")
    return path


if __name__ == "__main__":
    sys.exit(main())
