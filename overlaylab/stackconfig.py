"""Reading a stack's config: the one place that knows where config comes from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from overlaylab.config import KEYS, LabConfig, parse

PROJECT = "overlay-etcd"
PROJECT_DIR = Path(__file__).resolve().parent.parent


def stack_file(stack: str) -> Path:
    return PROJECT_DIR / "stacks" / f"Pulumi.{stack}.yaml"


def from_pulumi(stack: str) -> LabConfig:
    """The running program's config (``pulumi.Config``), validated."""
    import pulumi

    conf = pulumi.Config(PROJECT)
    raw: dict[str, Any] = {k: conf.get_object(k) for k in KEYS}
    return parse(raw, f"stacks/Pulumi.{stack}.yaml")


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
