"""The providers' diff rules and the engine's resource options, as ENGINE.md reads them.

For a resource that already exists in the stack's state, the engine asks its provider to diff
the old inputs against the new ones. The answer is one of three:

- ``same``: nothing runs, the old id and outputs stand;
- ``update``: the provider updates in place (pulumi-command re-runs ``update``, or ``create``);
- ``replace``: a new resource is created and the old one deleted, create-before-delete unless
  the provider or the resource asks for delete-before-replace.

The rules below are per resource type and input name, from pulumi-command 1.2.1 (its ``infer``
default diff) and pulumi-docker 5.x (the Terraform provider's ForceNew flags). An input the
table does not name is refused: guessing would make the plan lie.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pulumi.output import Unknown
from pulumi.runtime import rpc

COMMAND = "command:local:Command"
REMOTE_COMMAND = "command:remote:Command"
COPY_TO_REMOTE = "command:remote:CopyToRemote"
DOCKER_PROVIDER = "pulumi:providers:docker"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
NETWORK = "docker:index/network:Network"
CONTAINER = "docker:index/container:Container"

UNKNOWN = rpc.UNKNOWN  # a value computed later (preview): it always counts as a change

Kind = Literal["create", "same", "update", "replace", "delete"]


class UnmodeledChange(Exception):
    """An input or option whose effect on an existing resource the stand-in does not model."""


@dataclass(frozen=True)
class TypeRules:
    replaces: frozenset[str] | None  # inputs whose change replaces; None: every input
    updates: frozenset[str]  # inputs updated in place
    always_delete_before_replace: bool = False  # the provider asks for it


_COMMAND_UPDATES = frozenset(
    {
        "create",
        "update",
        "delete",
        "environment",
        "stdin",
        "logging",
        "addPreviousOutputInEnv",
        "dir",
        "interpreter",
    }
)

RULES: dict[str, TypeRules] = {
    COMMAND: TypeRules(frozenset({"triggers"}), _COMMAND_UPDATES),
    REMOTE_COMMAND: TypeRules(frozenset({"triggers"}), _COMMAND_UPDATES | {"connection"}),
    COPY_TO_REMOTE: TypeRules(
        frozenset({"triggers"}), frozenset({"source", "remotePath", "connection"})
    ),
    # Every provider setting updates the provider in place; it keeps its id.
    DOCKER_PROVIDER: TypeRules(frozenset(), frozenset({"host", "sshOpts", "version"})),
    REMOTE_IMAGE: TypeRules(
        frozenset({"name", "platform", "triggers", "pullTriggers"}),
        frozenset({"keepLocally", "forceRemove"}),
    ),
    NETWORK: TypeRules(None, frozenset()),
    CONTAINER: TypeRules(
        frozenset(
            {
                "name",
                "image",
                "networksAdvanced",
                "command",
                "hostname",
                "labels",
                "envs",
                "ports",
                "volumes",
                "mounts",
                "entrypoint",
                "user",
            }
        ),
        frozenset(
            {
                "mustRun",
                "restart",
                "memory",
                "memorySwap",
                "cpuShares",
                "rm",
                "wait",
                "start",
                "logs",
            }
        ),
        always_delete_before_replace=True,
    ),
}


#: Optional+Computed inputs of the bridged Docker resources (terraform-provider-docker v4.5.0
#: resource_docker_network.go:40-54,56-62,99-104; resource_docker_container.go:151-153,
#: 166-168, and 833-840 labels, which the Read never sets, funcs.go:893-897): unset in the
#: program, the state keeps what it has, and that is no change (terraform-plugin-sdk v2
#: helper/schema/schema.go:1534-1537 maps, 1589-1594 sets, 1746-1751 strings and bools).
OPTIONAL_COMPUTED: dict[str, frozenset[str]] = {
    NETWORK: frozenset({"driver", "options", "internal", "ipamConfigs"}),
    CONTAINER: frozenset({"command", "hostname", "labels"}),
}

#: Bridged resources: the bridge diffs the new inputs against the resource's state (its
#: outputs), which a Read may have changed (a stopped container's mustRun).
BRIDGED = frozenset({REMOTE_IMAGE, NETWORK, CONTAINER})


@dataclass(frozen=True)
class Options:
    """The resource options that change what the engine does with an existing resource."""

    delete_before_replace: bool = False
    replace_on_changes: tuple[str, ...] = ()
    ignore_changes: tuple[str, ...] = ()
    retain_on_delete: bool = False
    deleted_with: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "deleteBeforeReplace": self.delete_before_replace,
            "replaceOnChanges": list(self.replace_on_changes),
            "ignoreChanges": list(self.ignore_changes),
            "retainOnDelete": self.retain_on_delete,
            "deletedWith": self.deleted_with,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> Options:
        d = d or {}
        return cls(
            delete_before_replace=bool(d.get("deleteBeforeReplace")),
            replace_on_changes=tuple(d.get("replaceOnChanges") or ()),
            ignore_changes=tuple(d.get("ignoreChanges") or ()),
            retain_on_delete=bool(d.get("retainOnDelete")),
            deleted_with=d.get("deletedWith") or "",
        )


def options_from_request(request: Any) -> Options:
    """The options of a RegisterResource request; refuses the ones the stand-in does not model
    (``MockResourceArgs`` carries none, so they are read from the request itself)."""
    refused = []
    if request.protect:
        refused.append("protect")
    if request.importId:
        refused.append("import")
    if list(request.aliasURNs) or list(request.aliases):
        refused.append("aliases")
    if request.HasField("customTimeouts") and (
        request.customTimeouts.create
        or request.customTimeouts.update
        or request.customTimeouts.delete
    ):
        refused.append("custom_timeouts")
    if request.HasField("replacement_trigger"):
        refused.append("replacement_trigger")
    if list(request.replace_with):
        refused.append("replace_with")
    if request.HasField("hooks") and any(
        list(getattr(request.hooks, f.name)) for f in request.hooks.DESCRIPTOR.fields
    ):
        refused.append("hooks")
    if refused:
        raise UnmodeledChange(
            f"{request.type} ({request.name}) uses resource options the stand-in does not "
            f"model: {', '.join(refused)}"
        )
    return Options(
        delete_before_replace=bool(request.deleteBeforeReplace),
        replace_on_changes=tuple(request.replaceOnChanges),
        ignore_changes=tuple(request.ignoreChanges),
        retain_on_delete=bool(request.retainOnDelete),
        deleted_with=request.deletedWith or "",
    )


@dataclass(frozen=True)
class Diff:
    kind: Kind
    changed: tuple[str, ...] = ()  # input names whose value differs (sorted)
    replace_reasons: tuple[str, ...] = ()  # the subset (or "provider") that forces replace
    delete_before_replace: bool = False
    inputs: dict[str, Any] = field(default_factory=dict)  # new inputs after ignore_changes

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.kind]


SYMBOLS: dict[Kind, str] = {
    "create": "+",
    "same": " ",
    "update": "~",
    "replace": "+-",
    "delete": "-",
}


def has_unknown(value: Any) -> bool:
    """An unknown as the registration carries it (``Unknown``, from deserializing with
    keep_unknowns) or as the plan writes it (the ``UNKNOWN`` sentinel)."""
    if isinstance(value, Unknown):
        return True
    if isinstance(value, str):
        return value == UNKNOWN
    if isinstance(value, Mapping):
        return any(has_unknown(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_unknown(v) for v in value)
    return False


def _path(path: str) -> list[str]:
    """``environment.FOO`` or ``environment["FOO"]`` -> ["environment", "FOO"]."""
    parts: list[str] = []
    for chunk in path.replace('"]', "").replace("']", "").replace("[", ".").split("."):
        chunk = chunk.strip("\"'")
        if chunk:
            parts.append(chunk)
    return parts


def apply_ignore_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], paths: Iterable[str]
) -> dict[str, Any]:
    """The new inputs with each ignored path holding its old value, as the engine does."""
    result = json.loads(json.dumps(dict(new), default=str))
    for path in paths:
        keys = _path(path)
        if not keys:
            continue
        src: Any = old
        for k in keys:
            src = src.get(k, _MISSING) if isinstance(src, Mapping) else _MISSING
            if src is _MISSING:
                break
        dst: Any = result
        for k in keys[:-1]:
            if not isinstance(dst, dict):
                dst = None
                break
            dst = dst.setdefault(k, {})
        if not isinstance(dst, dict):
            continue
        if src is _MISSING:
            dst.pop(keys[-1], None)
        else:
            dst[keys[-1]] = json.loads(json.dumps(src, default=str))
    return result


_MISSING = object()


def _unkept(value: Any) -> bool:
    """A value the state file keeps only as a digest: a secret, a file archive."""
    if isinstance(value, Mapping):
        if set(value) in ({"secret"}, {"fileArchive", "sha256"}):
            return True
        return any(_unkept(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_unkept(v) for v in value)
    return False


def with_ignored_changes(
    old_inputs: Mapping[str, Any], inputs: Mapping[str, Any], paths: Iterable[str], name: str = ""
) -> dict[str, Any]:
    """The inputs the provider gets on an update or a replacement: the program's, with each
    ignored path set back to its old value (pulumi v3.259.0 pkg/resource/deploy/
    step_generator.go:1264-1269, processIgnoreChanges 3026-3049); the old value comes from the
    state, so one the state keeps only as a digest (a secret) is refused."""
    result = copy.deepcopy(dict(inputs))
    for path in paths:
        keys = _path(path)
        src: Any = old_inputs
        for k in keys:
            src = src.get(k, _MISSING) if isinstance(src, Mapping) else _MISSING
            if src is _MISSING:
                break
        if src is not _MISSING and _unkept(src):
            raise UnmodeledChange(
                f"{name}: ignore_changes on {path}: its old value is a secret or an archive, "
                f"which the stand-in's state keeps only as a digest"
            )
        dst: Any = result
        for k in keys[:-1]:
            dst = dst.get(k) if isinstance(dst, dict) else None
        if not keys or not isinstance(dst, dict):
            continue
        if src is _MISSING:
            dst.pop(keys[-1], None)
        else:
            dst[keys[-1]] = copy.deepcopy(src)
    return result


def _norm(value: Any) -> Any:
    """Values as the provider compares them: unset, None and empty collections are alike."""
    if value in (None, [], {}, ""):
        return None
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def changed_inputs(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = set(old) | set(new)
    return sorted(
        k for k in keys if has_unknown(new.get(k)) or _norm(old.get(k)) != _norm(new.get(k))
    )


def diff(
    typ: str,
    old_inputs: Mapping[str, Any],
    new_inputs: Mapping[str, Any],
    options: Options,
    *,
    provider_changed: bool = False,
    name: str = "",
    old_outputs: Mapping[str, Any] | None = None,
    init_errors: bool = False,
    force_replace: bool = False,
) -> Diff:
    """The engine's step for an existing custom resource: same, update or replace.

    ``old_outputs``: the state a bridged resource is diffed against; ``init_errors``: the
    last create failed half-way (an unchanged resource is then updated, pulumi
    step_generator.go:2180-2195); ``force_replace``: ``up --replace`` names it."""
    rules = RULES.get(typ)
    if rules is None:
        raise UnmodeledChange(f"{typ} ({name}): the stand-in has no diff rules for this type")
    inputs = apply_ignore_changes(old_inputs, new_inputs, options.ignore_changes)
    base = dict(old_inputs)
    if typ in BRIDGED and old_outputs:
        base.update({k: old_outputs[k] for k in set(base) | set(inputs) if k in old_outputs})
    changed = [
        k
        for k in changed_inputs(base, inputs)
        if not (k in OPTIONAL_COMPUTED.get(typ, ()) and _norm(inputs.get(k)) is None)
    ]
    unknown = [
        k
        for k in changed
        if rules.replaces is not None and k not in rules.replaces and k not in rules.updates
    ]
    if unknown:
        raise UnmodeledChange(
            f"{typ} ({name}): a change of {', '.join(unknown)} is not modelled by the stand-in"
        )
    forced = set(options.replace_on_changes)
    reasons = [
        k
        for k in changed
        if rules.replaces is None or k in rules.replaces or k in forced or "*" in forced
    ]
    if provider_changed:
        reasons.append("provider")
    if force_replace:
        reasons.append("--replace")
    dbr = (
        rules.always_delete_before_replace
        or options.delete_before_replace
        # The Terraform bridge marks a Network with an explicit name delete-before-replace:
        # two networks of one name cannot exist at once.
        or (typ == NETWORK and bool(inputs.get("name")))
    )
    if reasons:
        kind: Kind = "replace"
    elif changed or init_errors:
        kind = "update"
    else:
        kind = "same"
    return Diff(kind, tuple(changed), tuple(reasons), dbr, inputs)


def show(value: Any, width: int = 90) -> str:
    """A value as the plan prints it: compact JSON, unknowns as ``output<string>``."""
    text = json.dumps(value, sort_keys=True, default=str).replace(f'"{UNKNOWN}"', "output<string>")
    return text if len(text) <= width else text[: width - 3] + "..."
