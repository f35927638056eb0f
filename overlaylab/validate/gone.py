"""A name that left resolves nowhere: ``overlay.name-gone``.

The spec says which containers the stack has, not which it had. So the validation run by `up`
keeps in etcd (the v2 key :data:`KEY`, beside Docker's own keys; it goes with the cluster at
destroy) the stack's containers and the networks each is on (``containers``), and the names
that left and were not yet shown gone (``left``); every validation reads it before its checks.
A name that was on a network and is not any more (its container removed from the stack, or
moved off that network) must not resolve in any of that network's containers that share no
network with it now: Docker's embedded DNS answers a name from the service records of the
container's own networks, and a record left behind is a stale name.

Inside `up`, a name that leaves in that same `up` still resolves: the engine deletes what left
the stack only after the program's resources, the validation included (as with a leaving
host's member). Such a name is reported, not failed, and kept in ``left``; so is every name not
shown gone. The next validation (by hand after `up`, or the next `up`'s) is strict for it.
Converging (retried like the other groups): a daemon drops the record when the endpoint's
delete reaches it through the store's watch, a moment after the container is gone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from overlaylab.errors import LabError
from overlaylab.validate import probes
from overlaylab.validate.overlay import PING_TIMEOUT
from overlaylab.validate.records import ContainerInfo, Lab, Result, _r

#: The stack's containers and their networks, as the last `up` validated them.
KEY = "/overlaylab/containers"
CHECK = "overlay.name-gone"

Placement = dict[str, list[str]]


def current(lab: Lab) -> Placement:
    """Each of the spec's containers and the networks it is on."""
    return {str(c["name"]): lab.networks_of(str(c["name"])) for c in lab.all_containers}


@dataclass(frozen=True)
class Former:
    """What the last `up` kept: the stack then, and the names left and not shown gone."""

    containers: Placement
    left: Placement


def _placement(value: Any) -> Placement:
    return {str(k): [str(n) for n in v] for k, v in value.items()}


def read_former(lab: Lab) -> Former:
    """What the last `up` kept (nothing on a stack's first up). Raises LabError when no
    member answers or the key holds something else."""
    node = lab.any_etcd().v2_get(KEY, recursive=False)
    if node is None or not node.value:
        return Former({}, {})
    try:
        value = json.loads(node.value)
        return Former(_placement(value["containers"]), _placement(value.get("left", {})))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise LabError(
            f"etcd's {KEY} is not what the validator keeps there ({e}): remove it "
            f"(ETCDCTL_API=2 etcdctl rm {KEY}) and the next up keeps it anew"
        ) from None


Pair = tuple[str, str]


def gone_pairs(former: Placement, now: Placement) -> list[Pair]:
    """(name, network) that were in ``former`` and are not in ``now``, on networks the stack
    still has (a removed network's containers went with it)."""
    nets = {n for ns in now.values() for n in ns}
    return sorted(
        (name, net)
        for name, was in former.items()
        for net in was
        if net not in now.get(name, []) and net in nets
    )


@dataclass(frozen=True)
class Gone:
    """The names to ask for: all of them, and those that leave in this very `up`."""

    pairs: list[Pair]
    leaving: frozenset[Pair]


def to_check(former: Former, now: Placement, in_up: bool) -> Gone:
    """Names that left since the last up (leaving now, when ``in_up``) and those it kept as
    not yet shown gone (strict everywhere)."""
    leaving = gone_pairs(former.containers, now)
    earlier = gone_pairs(former.left, now)
    return Gone(
        sorted(set(leaving) | set(earlier)),
        frozenset(p for p in leaving if p not in earlier) if in_up else frozenset(),
    )


def keep(lab: Lab, now: Placement, still: list[Pair]) -> None:
    """Writes the stack ``now`` and the names that left and were not shown gone (checked
    again next time). Raises LabError when etcd refuses."""
    left: dict[str, list[str]] = {}
    for name, net in still:
        left.setdefault(name, []).append(net)
    doc = {"containers": now, "left": left}
    lab.any_etcd().v2_put(KEY, json.dumps(doc, sort_keys=True))


def _resolves(lab: Lab, src: ContainerInfo, name: str) -> tuple[bool, str]:
    """Whether ``name`` resolves in ``src`` (its own resolver, Docker's embedded DNS)."""
    if lab.local and src.netns is not None:
        found, why = probes.dns_lookup(src.netns, name, timeout=PING_TIMEOUT)
        return (True, f"resolves to {', '.join(found)}") if found else (False, why)
    try:
        res = lab.docker(src.host).containers.get(src.name).exec_run(["nslookup", name])
    except Exception as e:  # the probe could not run: said as such, and it fails
        raise LabError(f"exec in {src.name} failed: {e}") from None
    text = res.output.decode(errors="replace").strip().splitlines()
    if res.exit_code == 0:
        return True, "resolves (" + "; ".join(ln for ln in text if "Address" in ln)[-200:] + ")"
    return False, text[-1] if text else f"nslookup exit {res.exit_code}"


def proven(pairs: list[Pair], results: list[Result]) -> list[Pair]:
    """The pairs every record of which says the name does not resolve."""
    out = []
    for name, net in pairs:
        mine = [
            r
            for r in results
            if r.check == CHECK
            and r.subject.startswith(f"{name} (left ")
            and r.subject.endswith(f" on {net}")
        ]
        if all(r.ok and r.actual.startswith("does not resolve") for r in mine):
            out.append((name, net))
    return out


def check_names_gone(lab: Lab, gone: Gone) -> list[Result]:
    """``overlay.name-gone``: each (name, network) of ``gone`` resolves in none of that
    network's running containers that share no network with the name now (but those leaving
    in this `up`: reported)."""
    now = current(lab)
    views = {v.network["name"]: v for v in lab.views()}
    jobs: list[tuple[str, str, ContainerInfo]] = []
    for name, net in gone.pairs:
        shares = set(now.get(name, []))
        view = views[net]
        infos = view.container_infos()
        for c in view.containers:
            if set(lab.networks_of(c["name"])) & shares:
                continue  # it reaches the name on a network they still share
            jobs.append((name, net, infos[c["name"]]))

    def one(job: tuple[str, str, ContainerInfo]) -> Result:
        name, net, src = job
        where = "the stack" if name not in now else net
        subject = f"{name} (left {where}) from {src.name} ({src.host}) on {net}"
        expected = "does not resolve"
        if not src.on_overlay:
            return _r(CHECK, subject, expected, f"not probed: {src.error or 'no address'}", False)
        try:
            found, detail = _resolves(views[net], src, name)
        except LabError as e:
            return _r(CHECK, subject, expected, str(e), False)
        if found and (name, net) in gone.leaving:
            return _r(
                CHECK, subject, expected,
                f"{detail}: leaving (its container is deleted after this check by `up`; the "
                f"next validation checks the name)", True,
            )  # fmt: skip
        if found:
            return _r(
                CHECK, subject, expected,
                f"{detail}: Docker's embedded DNS on {src.host} still has a record of it",
                False,
            )  # fmt: skip
        return _r(CHECK, subject, expected, f"does not resolve ({detail})", True)

    return lab.map(one, jobs)
