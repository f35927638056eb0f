"""Reading a stack's config: the one place that knows where config comes from."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from overlaylab.config import KEYS, LabConfig, parse
from overlaylab.config.model import PROJECT
from overlaylab.errors import ConfigError

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
    from pulumi.runtime import config as runtime_config

    conf = pulumi.Config(PROJECT)
    raw: dict[str, Any] = {k: conf.get_object(k) for k in KEYS}
    raw[SECRET_KEY] = conf.get(SECRET_KEY)
    # Every key set under this project's namespace, so that parse names a misspelt one (the
    # engine hands the program its whole config; Config.get reads only what is asked for).
    every = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    for full in every:
        ns, _, name = full.partition(":")
        if ns == PROJECT and name not in raw:
            raw[name] = every[full]
    cfg = parse(raw, f"stacks/Pulumi.{stack}.yaml")
    key = conf.get_secret(SECRET_KEY) if cfg.transport == "ssh" else None
    return cfg, key


def raw_from_file(stack: str, path: Path | None = None) -> dict[str, Any]:
    """A stack file's config values under this project's namespace, keyed without it; ``path``
    in place of stacks/Pulumi.<stack>.yaml (the CLI's ``--config-file``)."""
    import yaml

    path = path or stack_file(stack)
    if not path.is_file():
        here = sorted(p.name.split(".")[1] for p in path.parent.glob("Pulumi.*.yaml"))
        raise ConfigError(
            f"no stack {stack!r}: {_shown(path)} does not exist; the stacks in stacks/ are "
            f"{', '.join(here)}"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"{_shown(path)} is not valid YAML{at}: {problem}") from None
    config = data.get("config") if isinstance(data, dict) else None
    if not isinstance(config, dict):
        raise ConfigError(
            f"{_shown(path)} has no config mapping: write the settings under "
            f"config:, each as {PROJECT}:<key>"
        )
    out: dict[str, Any] = {}
    for key, value in config.items():
        ns, _, name = str(key).partition(":")
        if ns == PROJECT:  # parse names any key it does not know
            out[name] = value
    return out


def write_stack_file(path: Path, raw: dict[str, Any]) -> Path:
    """A stack file holding ``raw`` under this project's namespace, as ``raw_from_file`` (the
    CLI's ``--config-file``) reads it back; written as JSON, which is YAML. Returns ``path``."""
    path.write_text(json.dumps({"config": {f"{PROJECT}:{k}": v for k, v in raw.items()}}))
    return path


def _shown(path: Path) -> str:
    return str(path.relative_to(PROJECT_DIR)) if path.is_relative_to(PROJECT_DIR) else str(path)


def from_file(stack: str) -> LabConfig:
    return parse(raw_from_file(stack), f"stacks/Pulumi.{stack}.yaml")
