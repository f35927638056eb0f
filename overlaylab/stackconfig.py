"""Reading a stack's config: the one place that knows where config comes from."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from overlaylab.config import KEYS, LabConfig, parse

PROJECT = "overlay-etcd"
PROJECT_DIR = Path(__file__).resolve().parent.parent


def package_hash() -> str:
    """A digest of the package copied to remote hosts: a code change copies it again."""
    digest = hashlib.sha256()
    package = PROJECT_DIR / "overlaylab"
    for f in sorted(package.rglob("*.py")):
        digest.update(f.relative_to(package).as_posix().encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:16]


def stack_file(stack: str) -> Path:
    return PROJECT_DIR / "stacks" / f"Pulumi.{stack}.yaml"


SECRET_KEY = "sshPrivateKey"


def from_pulumi(stack: str) -> tuple[LabConfig, Any]:
    """The running program's config, validated, and the SSH key as a secret Output (or None).

    The key is read in plain text only to check that it is there and looks like a key; the
    program only ever handles it as a secret, so it stays encrypted in state.
    """
    import pulumi

    conf = pulumi.Config(PROJECT)
    raw: dict[str, Any] = {k: conf.get_object(k) for k in KEYS}
    raw[SECRET_KEY] = conf.get(SECRET_KEY)
    cfg = parse(raw, f"stacks/Pulumi.{stack}.yaml")
    key = conf.get_secret(SECRET_KEY) if cfg.transport == "ssh" else None
    return cfg, key


def raw_from_file(stack: str) -> dict[str, Any]:
    """A stack file's config values under this project's namespace, keyed without it."""
    import yaml

    path = stack_file(stack)
    data = yaml.safe_load(path.read_text()) or {}
    out: dict[str, Any] = {}
    for key, value in (data.get("config") or {}).items():
        ns, _, name = key.partition(":")
        if ns == PROJECT and name in KEYS:
            out[name] = value
    return out


def from_file(stack: str) -> LabConfig:
    return parse(raw_from_file(stack), f"stacks/Pulumi.{stack}.yaml")
