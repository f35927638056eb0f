"""What each host of a running local lab knows about the overlay: a capture made before teardown.

For every host (a network namespace): the overlay network sandbox's VXLAN fdb and neighbour
entries, the serf members its dockerd has seen and its serf/discovery log lines, and the
containers with their start times against the daemon's serf start; for the lab, the
``/docker/nodes`` and endpoint keys from etcd's v2 API (after the route check). It ends with
findings: which host's sandbox lacks the MAC/VTEP or the neighbour entry of which remote
container, and which serf does not know which host.

    python -m overlaylab.labdump --stack local          # a lab brought up from a stack file
    python -m overlaylab.labdump --config-json "{...}"  # a lab from a raw config (the tests)

Docker 20.10 in cluster-store mode learns remote containers only through serf (user events
"jl" and "peerlookup" queries), and its serf joins a single neighbour once; the findings are
what show that one host's serf is alone (see docs/troubleshooting.md).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from overlaylab import sandboxkey
from overlaylab.config import Host, LabConfig, parse
from overlaylab.errors import LabError
from overlaylab.etcd import EtcdClient, V2Node
from overlaylab.netrule import RouteGuard

_MEMBER = re.compile(r"serf: (EventMember\w+): (\S+) (\S+)")
_TIME = re.compile(r'time="([^"]+)"')
_LOG_KEEP = re.compile(
    r"serf|memberlist|discovery|peer|neighbor|svcRecord|endpoints for network|level=(error|warn)",
    re.IGNORECASE,
)


@dataclass
class Sandbox:
    path: str
    vxlan: str
    fdb: list[str]
    neigh: list[str]


@dataclass
class HostView:
    host: Host
    debug: bool
    serf_start: str | None
    members: dict[str, str]  # serf node name -> last event (EventMemberJoin, ...)
    member_since: dict[str, str]  # serf node name -> time of its first join event
    log_lines: list[str]
    sandboxes: list[Sandbox]
    containers: list[dict[str, Any]] = field(default_factory=list)
    #: the stack's networks as this daemon lists them: name -> id
    network_ids: dict[str, str] = field(default_factory=dict)

    def sandbox_of(self, net: str) -> Sandbox | None:
        """The overlay sandbox of network ``net``: its newest epoch's (``sandboxkey``)."""
        nid = self.network_ids.get(net, "")
        mine = sandboxkey.of_network_in([s.path for s in self.sandboxes], nid) if nid else []
        return next((s for s in self.sandboxes if s.path == mine[-1]), None) if mine else None


def _run(argv: list[str]) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    return p.stdout + (f"[exit {p.returncode}] {p.stderr.strip()}" if p.returncode else "")


def sandboxes(cfg: LabConfig, host: Host) -> list[Sandbox]:
    return sandboxes_in(Path(cfg.host_dir(host)) / "x" / "netns")


def sandboxes_in(base: Path) -> list[Sandbox]:
    """The overlay sandboxes under an exec-root's ``netns`` directory, with their tables."""
    found = []
    for f in sorted(base.glob("*")) if base.is_dir() else []:
        if sandboxkey.parse(f.name) is None:
            continue
        ns = ["nsenter", f"--net={f}", "--"]
        links = _run([*ns, "ip", "-o", "link", "show", "type", "vxlan"])
        names = re.findall(r"^\d+: ([^:@]+)", links, re.MULTILINE)
        for vx in names or ["?"]:
            fdb = _run([*ns, "bridge", "fdb", "show", "dev", vx]).splitlines()
            neigh = _run([*ns, "ip", "neigh", "show"]).splitlines()
            found.append(Sandbox(str(f), vx, fdb, neigh))
    return found


def log_view(cfg: LabConfig, host: Host, keep: int = 80) -> tuple[bool, list[str]]:
    """(debug on?, the serf/discovery/peer/warning lines of the host's docker.log)."""
    path = Path(cfg.host_dir(host)) / "docker.log"
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return False, [f"(no log: {e})"]
    debug = any("level=debug" in ln for ln in lines)
    kept = [ln for ln in lines if _LOG_KEEP.search(ln)]
    return debug, kept[-keep:]


def serf_view(lines: list[str], hostname: str) -> tuple[str | None, dict[str, str], dict[str, str]]:
    """From the log: when this daemon's serf started, and what it saw of each member."""
    start = None
    last: dict[str, str] = {}
    since: dict[str, str] = {}
    for ln in lines:
        m = _MEMBER.search(ln)
        if not m:
            continue
        t = _TIME.search(ln)
        when = t.group(1) if t else "?"
        event, node = m.group(1), m.group(2)
        last[node] = event
        if event == "EventMemberJoin":
            since.setdefault(node, when)
            if node == hostname and start is None:
                start = when
    return start, last, since


def containers(cfg: LabConfig, host: Host) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The host's containers, each with its address on every network of the stack it is on
    (``networks``: name -> ip, mac, endpoint), and the stack's networks' ids on this daemon."""
    from overlaylab.hosts.dockerd import docker_api

    out: list[dict[str, Any]] = []
    ids: dict[str, str] = {}
    wanted = [n.name for n in cfg.networks]
    try:
        api = docker_api(cfg.docker_socket(host), timeout=10)
        ids = {n["Name"]: n["Id"] for n in api.networks(names=wanted) if n["Name"] in wanted}
        for c in api.containers(all=True):
            info = api.inspect_container(c["Id"])
            nets = info["NetworkSettings"]["Networks"] or {}
            out.append(
                {
                    "name": info["Name"].lstrip("/"),
                    "status": info["State"]["Status"],
                    "started": info["State"]["StartedAt"],
                    "networks": {
                        n: {
                            "ip": nets[n].get("IPAddress", ""),
                            "mac": nets[n].get("MacAddress", ""),
                            "endpoint": nets[n].get("EndpointID", ""),
                        }
                        for n in wanted
                        if n in nets
                    },
                }
            )
    except Exception as e:  # a dead daemon is a finding, not a reason to stop the capture
        out.append({"name": "?", "status": f"daemon unreachable: {e}", "networks": {}})
    return out, ids


def host_view(cfg: LabConfig, host: Host) -> HostView:
    debug, lines = log_view(cfg, host)
    start, members, since = serf_view(lines, host.name)
    found, ids = containers(cfg, host)
    return HostView(
        host=host,
        debug=debug,
        serf_start=start,
        members=members,
        member_since=since,
        log_lines=lines,
        sandboxes=sandboxes(cfg, host),
        containers=found,
        network_ids=ids,
    )


def etcd_keys(cfg: LabConfig) -> tuple[list[str], list[dict[str, str]], str]:
    """(/docker/nodes entries, endpoint records, error) from the first member that answers."""
    guard = RouteGuard(cfg.local_bridge)
    err = ""
    for h in cfg.hosts:
        try:
            etcd = EtcdClient(cfg.client_url(h), guard, timeout=3)
            nodes = etcd.v2_get("/docker/nodes")
            eps = etcd.v2_get("/docker/network/v1.0/endpoint")
        except LabError as e:
            err = str(e)
            continue
        node_list = [f"{n.key} ttl={n.ttl}" for n in (nodes.nodes if nodes else ())]
        return node_list, [_endpoint(n) for n in _leaves(eps)], ""
    return [], [], err


def _leaves(node: V2Node | None) -> list[V2Node]:
    return [n for n in node.walk() if not n.dir and n.value] if node else []


def _endpoint(n: V2Node) -> dict[str, str]:
    try:
        v = json.loads(n.value or "{}")
    except ValueError:
        return {"key": n.key, "raw": n.value or ""}
    iface = v.get("ep_iface") or {}
    return {
        "key": n.key,
        "name": str(v.get("name", "")),
        "addr": str(iface.get("addr", "")),
        "mac": str(iface.get("mac", "")),
        "locator": str(v.get("locator", "")),
    }


def findings(cfg: LabConfig, views: list[HostView]) -> list[str]:
    """One line per missing piece: serf members unknown, fdb/neighbour entries missing."""
    out = []
    names = [h.name for h in cfg.hosts]
    for v in views:
        alive = {n for n, ev in v.members.items() if ev == "EventMemberJoin"}
        missing = [n for n in names if n not in alive]
        if missing:
            out.append(f"serf on {v.host.name} has not seen {', '.join(missing)} join")
    nets = [n.name for n in cfg.networks]
    for net in nets:
        on = f" on {net}" if len(nets) > 1 else ""
        for v in views:
            sbox = v.sandbox_of(net)
            local = [c["name"] for c in v.containers if c["networks"].get(net, {}).get("ip")]
            if sbox is None:
                # Docker makes a network's sandbox only where one of its containers runs
                if local:
                    out.append(
                        f"{v.host.name} has no overlay sandbox for {net} although "
                        f"{', '.join(local)} is on it"
                    )
                continue
            for other in views:
                if other is v:
                    continue
                for c in other.containers:
                    addr = c["networks"].get(net) or {}
                    if not addr.get("ip"):
                        continue
                    fdb = [ln for ln in sbox.fdb if ln.startswith(addr.get("mac") or "-")]
                    neigh = [ln for ln in sbox.neigh if ln.split(" ", 1)[0] == addr["ip"]]
                    vtep_ok = any(f"dst {other.host.address}" in ln for ln in fdb)
                    if not vtep_ok or not neigh:
                        what = []
                        if not vtep_ok:
                            what.append(f"no fdb entry {addr.get('mac')} -> {other.host.address}")
                        if not neigh:
                            what.append(f"no neighbour entry for {addr['ip']}")
                        out.append(
                            f"{v.host.name}'s overlay sandbox{on} does not know {c['name']} "
                            f"on {other.host.name}: {'; '.join(what)}"
                        )
    return out


def dump(cfg: LabConfig) -> str:
    """The whole capture as text."""
    views = [host_view(cfg, h) for h in cfg.hosts]
    w: list[str] = []
    for v in views:
        w.append(f"=== {v.host.name} {v.host.address} (netns {v.host.netns(cfg.lab_id)})")
        w.append(f"dockerd debug log: {'on' if v.debug else 'off (info level)'}")
        w.append(f"serf started (own EventMemberJoin): {v.serf_start}")
        for node, ev in sorted(v.members.items()):
            w.append(f"  serf member {node}: {ev} (first join {v.member_since.get(node)})")
        for c in v.containers:
            where = "; ".join(
                f"{n} ip {a.get('ip')} mac {a.get('mac')}" for n, a in c["networks"].items()
            )
            w.append(
                f"  container {c.get('name')}: {c.get('status')} started {c.get('started')} "
                f"{where or 'on no network of the stack'}"
            )
        if not v.sandboxes:
            w.append("  no overlay sandbox")
        for s in v.sandboxes:
            net = next(
                (
                    n
                    for n, nid in v.network_ids.items()
                    if sandboxkey.of_network(Path(s.path).name, nid)
                ),
                "a network not the stack's",
            )
            w.append(f"  sandbox {s.path} ({net}) vxlan {s.vxlan}")
            w.extend(f"    fdb   {ln}" for ln in s.fdb)
            w.extend(f"    neigh {ln}" for ln in s.neigh)
        w.append("  log:")
        w.extend(f"    {ln[:300]}" for ln in v.log_lines)
    nodes, eps, err = etcd_keys(cfg)
    w.append("=== etcd v2 keys" + (f" (unreadable: {err})" if err else ""))
    w.extend(f"  node {n}" for n in nodes)
    w.extend(
        f"  endpoint {e.get('name')} {e.get('addr')} {e.get('mac')} locator {e.get('locator')}"
        for e in eps
    )
    w.append("=== findings")
    w.extend(f"  {f}" for f in findings(cfg, views) or ["(none: every host knows every peer)"])
    return "\n".join(w) + "\n"


# The evidence of a failed validation (``python -m overlaylab.validate --dump DIR``, and `up`
# when its validation fails): a directory of what explains the failure, read from the spec the
# validator ran on. Every part is written on its own: one that cannot be collected holds its
# error in its place (``{"error": ...}`` or a line ``not collected: ...``), and the rest goes on.

#: The daemons' and members' logs of a local lab's host directory, and the units of an ssh host.
LOCAL_LOGS = ("docker.log", "etcd.log", "keeper.log")
SSH_UNITS = ("docker", "etcd", "overlaylab-names-keeper")


def node_json(node: V2Node) -> dict[str, Any]:
    """An etcd v2 node as the v2 API gives it (key, value, dir, ttl, modifiedIndex, nodes)."""
    out: dict[str, Any] = {"key": node.key, "modifiedIndex": node.modified}
    if node.dir:
        out["dir"] = True
        out["nodes"] = [node_json(n) for n in node.nodes]
    else:
        out["value"] = node.value
    if node.ttl is not None:
        out["ttl"] = node.ttl
    return out


class Evidence:
    """Writes the parts of a dump under ``root``; ``index`` says what each part holds."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.index: dict[str, str] = {}
        root.mkdir(parents=True, exist_ok=True)

    def part(self, name: str, collect: Callable[[], Any]) -> None:
        """``collect()`` into ``name`` (JSON for a ``.json`` name, else text); its error in its
        place when it raises."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            value = collect()
            self.index[name] = "ok"
        except Exception as e:  # evidence: a part that fails is written as its error
            why = f"{type(e).__name__}: {e}"
            self.index[name] = f"not collected: {why}"
            value = {"error": why} if name.endswith(".json") else f"not collected: {why}\n"
        if name.endswith(".json"):
            path.write_text(json.dumps(value, indent=1, sort_keys=True, default=str) + "\n")
        else:
            path.write_text(value if isinstance(value, str) else str(value))


def _host_run(lab: Any, host: str, argv: list[str]) -> str:
    """A command on ``host``: in its namespace on a local lab, over SSH on an ssh stack."""
    from overlaylab.validate import counters

    if lab.spec["lab"].get("transport", "local") == "ssh":
        return counters.run(counters.ssh_argv(lab, host, shlex.join(argv)))
    return counters.run(["nsenter", f"--net={lab.host_netns(host)}", *argv])


def _sandboxes_text(lab: Any, host: str) -> str:
    from overlaylab.validate import counters

    if lab.spec["lab"].get("transport", "local") == "ssh":
        script = (
            f'for f in {counters.SSH_SANDBOX_DIR}/*-*; do [ -e "$f" ] || continue; '
            'echo "=== sandbox $f"; n="nsenter --net=$f"; $n ip -d link; '
            'echo "--- bridge fdb"; $n bridge fdb show; echo "--- ip neigh"; $n ip neigh show; '
            "done"
        )
        return counters.run(counters.ssh_argv(lab, host, script))
    where = counters.host_dir(lab, host)
    if where is None:
        raise LabError("no host directory on this machine")
    w: list[str] = []
    for s in sandboxes_in(Path(where) / "x" / "netns"):
        ns = ["nsenter", f"--net={s.path}", "--"]
        w.append(f"=== sandbox {s.path} vxlan {s.vxlan}")
        w.append(_run([*ns, "ip", "-d", "link"]))
        w.append("--- bridge fdb")
        w.append(_run([*ns, "bridge", "fdb", "show"]))
        w.append("--- ip neigh")
        w.extend(s.neigh)
    return "\n".join(w) + "\n" if w else "no overlay sandbox\n"


def _logs(ev: Evidence, lab: Any, host: str) -> None:
    from overlaylab.validate import counters

    if lab.spec["lab"].get("transport", "local") == "ssh":
        for unit in SSH_UNITS:
            # Since the unit's current start: its invocation's journal.
            cmd = (
                f"inv=$(systemctl show -p InvocationID --value {unit}); "
                f'journalctl --no-pager -o short-iso-precise _SYSTEMD_INVOCATION_ID="$inv"'
            )
            ev.part(
                f"{host}/journal-{unit}.log",
                partial(_ssh_run, lab, host, cmd),
            )
        return
    where = counters.host_dir(lab, host)
    for name in LOCAL_LOGS:
        ev.part(
            f"{host}/{name}",
            partial(_read_log, Path(str(where)) / name),
        )


def _kernel(lab: Any, host: str) -> str:
    """The host's kernel: this machine's on a local lab (its hosts are namespaces here)."""
    import platform

    if lab.spec["lab"].get("transport", "local") == "ssh":
        return _host_run(lab, host, ["uname", "-r"]).strip()
    return platform.release()


def _versions(lab: Any) -> dict[str, Any]:
    import importlib.metadata as md
    import platform

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "packages": sorted(f"{d.metadata['Name']}=={d.version}" for d in md.distributions()),
        "kernel": {},
        "docker": {},
        "etcd": {},
    }
    for h in lab.hosts:
        name = str(h["name"])
        fns: tuple[tuple[str, Callable[[str], Any]], ...] = (
            ("kernel", lambda n: _kernel(lab, n)),
            ("docker", lambda n: lab.docker(n).version()),
            ("etcd", lambda n: lab.etcd[n].version()),
        )
        for what, fn in fns:
            try:
                out[what][name] = fn(name)
            except Exception as e:  # one host's version is unknown: said, and the rest goes on
                out[what][name] = {"error": f"{type(e).__name__}: {e}"}
    return out


def _ssh_run(lab: Any, host: str, command: str) -> str:
    from overlaylab.validate import counters

    return counters.run(counters.ssh_argv(lab, host, command))


def _read_log(path: Path) -> str:
    return path.read_text(errors="replace")


def _host_parts(ev: Evidence, lab: Any, name: str, nets: list[str]) -> None:
    """One host's parts: its daemon's info and network inspects, its links, sandboxes, logs."""
    ev.part(f"{name}/docker-info.json", lambda: lab.docker(name).info())
    ev.part(
        f"{name}/network-inspect.json",
        lambda: {n: lab.docker(name).api.inspect_network(n, verbose=True) for n in nets},
    )
    ev.part(f"{name}/ip-d-link.txt", lambda: _host_run(lab, name, ["ip", "-d", "link"]))
    ev.part(f"{name}/sandboxes.txt", lambda: _sandboxes_text(lab, name))
    _logs(ev, lab, name)


def docker_keys(lab: Any) -> dict[str, Any]:
    """Docker's v2 keyspace (``/docker``, recursive) from the first member that answers, with
    the member it was read from; an error naming every member when none does."""
    errors = []
    for host, client in lab.etcd.items():
        try:
            node = client.v2_get("/docker")
        except LabError as e:
            errors.append(f"{host}: {e}")
            continue
        return {"member": client.endpoint, "node": node_json(node) if node else None}
    raise LabError("no etcd member answered: " + "; ".join(errors))


def write_evidence(root: Path, spec: dict[str, Any], records: dict[str, Any] | None) -> Path:
    """The dump of the lab ``spec`` describes into ``root``; ``records``: the validator's own
    (results, diagnosis, summary, facts) as JSON. Returns ``root``. Never raises for a part."""
    from overlaylab.validate.records import Lab, spec_networks

    ev = Evidence(root)
    ev.part("validator.json", lambda: {"spec": spec, **(records or {})})
    try:
        lab = Lab(spec)
    except Exception as e:  # no client to the lab: every other part is this error
        ev.index["lab"] = f"not collected: {type(e).__name__}: {e}"
        (root / "index.json").write_text(json.dumps(ev.index, indent=1, sort_keys=True) + "\n")
        return root
    try:
        ev.part("etcd-docker-keys.json", lambda: docker_keys(lab))
        nets = [str(n["name"]) for n in spec_networks(spec)]
        for h in lab.hosts:
            _host_parts(ev, lab, str(h["name"]), nets)
        ev.part("versions.json", lambda: _versions(lab))
    finally:
        lab.close()
    (root / "index.json").write_text(json.dumps(ev.index, indent=1, sort_keys=True) + "\n")
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m overlaylab.labdump", description=__doc__.split("\n")[0]
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--stack", default="local", help="a stack file under stacks/ (local transport)")
    g.add_argument("--config-json", help="the raw config of a lab, as tests/labtools builds it")
    args = p.parse_args(argv)
    if args.config_json:
        raw = json.loads(args.config_json)
    else:
        from overlaylab.stackconfig import raw_from_file

        raw = raw_from_file(args.stack)
    cfg = parse(raw)
    if cfg.transport != "local":
        print("labdump reads local labs only (namespaces on this machine)", file=sys.stderr)
        return 2
    sys.stdout.write(dump(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
