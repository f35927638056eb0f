"""The lab tests through Pulumi's Automation API, on machines that have a ``pulumi`` CLI.

Where ``pulumi`` is on PATH, the lab tests bring their stacks up and down through the real
engine and the real pulumi-command and pulumi-docker providers instead of the engine
stand-in (``standin/``): same program, same config, same assertions. The backend is
a local file backend in a temporary directory; nothing is written to Pulumi Cloud.
``OVERLAYLAB_ENGINE=standin`` forces the stand-in, ``OVERLAYLAB_ENGINE=automation`` requires
the CLI.

Not run where this project is built: the Pulumi CLI and its plugins cannot be installed
there (see docs/testing.md).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from standin import PROJECT, PROJECT_DIR, Record

#: Test stacks get this prefix so that they never touch a shipped ``stacks/Pulumi.*.yaml``.
STACK_PREFIX = "overlaylab-test-"
#: Only for the test stacks' secrets (the SSH key), in a backend removed after the run.
PASSPHRASE = "overlaylab-tests-only"


def engine() -> str:
    """``automation`` or ``standin``: which engine the lab tests use here."""
    wanted = os.environ.get("OVERLAYLAB_ENGINE", "")
    if wanted == "standin":
        return "standin"
    if shutil.which("pulumi"):
        return "automation"
    if wanted == "automation":
        raise RuntimeError("OVERLAYLAB_ENGINE=automation but no pulumi CLI is on PATH")
    return "standin"


def config_values(
    raw_config: dict[str, Any], secrets: dict[str, str] | None = None
) -> dict[str, Any]:
    """The stack config as Automation API values: objects as JSON, as `pulumi config set`
    stores them and ``Config.get_object`` reads them; secrets marked secret."""
    from pulumi import automation as auto

    values = {
        f"{PROJECT}:{k}": auto.ConfigValue(v if isinstance(v, str) else json.dumps(v))
        for k, v in raw_config.items()
    }
    for k, v in (secrets or {}).items():
        values[f"{PROJECT}:{k}"] = auto.ConfigValue(v, secret=True)
    return values


def records_from_deployment(deployment: dict[str, Any]) -> list[Record]:
    """The stack's resources from ``pulumi stack export``, as the stand-in records them."""
    out = []
    for r in deployment.get("resources") or []:
        if r["type"] == "pulumi:pulumi:Stack" or r["type"].startswith("pulumi:providers:"):
            continue
        out.append(
            Record(
                urn=r["urn"],
                type=r["type"],
                name=r["urn"].split("::")[-1],
                deps=list(r.get("dependencies") or []),
                parent=r.get("parent", ""),
                provider=r.get("provider", ""),
                custom=bool(r.get("custom")),
                delete_before_replace=bool(r.get("deleteBeforeReplace")),
                state=dict(r.get("outputs") or {}),
            )
        )
    return out


@dataclass
class AutoRun:
    """One ``pulumi up`` of a test stack; ``destroy()`` takes it down and removes the stack.

    ``records`` and ``inputs`` are the state as ``up`` left it, like the stand-in's, so they
    can still be read after ``destroy()``."""

    stack: Any
    backend: Path
    outputs: dict[str, Any] | None
    error: BaseException | None
    seconds: float
    deployment: dict[str, Any] = field(default_factory=dict)

    @property
    def records(self) -> list[Record]:
        return records_from_deployment(self.deployment)

    @property
    def inputs(self) -> dict[str, dict[str, Any]]:
        resources = self.deployment.get("resources") or []
        return {r["urn"]: dict(r.get("inputs") or {}) for r in resources}

    def destroy(self) -> list[str]:
        from pulumi import automation as auto

        errors = []
        try:
            self.stack.destroy(on_output=print, suppress_progress=True)
        except auto.CommandError as e:
            errors.append(str(e))
        if not errors:
            self.stack.workspace.remove_stack(self.stack.name)  # and its stack config file
        shutil.rmtree(self.backend, ignore_errors=True)
        return errors


def run_program(
    raw_config: dict[str, Any], stack: str, secrets: dict[str, str] | None = None
) -> AutoRun:
    """``pulumi up`` of ``__main__.py`` with this config; never raises for the program's own
    errors (they are ``AutoRun.error``), like the stand-in's ``run_program``."""
    from pulumi import automation as auto

    backend = Path(tempfile.mkdtemp(prefix="overlaylab-backend-"))
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(PROJECT_DIR),
        env_vars={
            "PULUMI_BACKEND_URL": f"file://{backend}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
        },
    )
    st = auto.create_or_select_stack(STACK_PREFIX + stack, work_dir=str(PROJECT_DIR), opts=opts)
    st.set_all_config(config_values(raw_config, secrets))
    start = time.monotonic()
    outputs: dict[str, Any] | None = None
    error: BaseException | None = None
    try:
        res = st.up(on_output=print, suppress_progress=True)
        outputs = {k: v.value for k, v in res.outputs.items()}
    except auto.CommandError as e:
        error = e
    seconds = time.monotonic() - start
    deployment = dict(st.export_stack().deployment or {})
    return AutoRun(st, backend, outputs, error, seconds, deployment)
