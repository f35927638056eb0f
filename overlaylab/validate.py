"""The post-deploy validator: does the lab do what the seed shows, and if not, what is wrong.

Each check yields records ``(check, subject, expected, actual, ok)``. Checks of things that
converge (TTL'd node keys, gossip, the overlay's neighbour tables) are retried until they pass
or the timeout is spent. The seed's name rule is probed once, at the end, and leaves nothing.

    python -m overlaylab.validate --stack local          # spec from stacks/Pulumi.local.yaml
    python -m overlaylab.validate --outputs out.json     # from `pulumi stack output --json`
    python -m overlaylab.validate --spec-json '{...}'    # what the pulumi step runs
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from overlaylab.errors import LabError
from overlaylab.etcd import EtcdClient
from overlaylab.hosts.pki import client_tls
from overlaylab.netrule import RouteGuard

NETWORK_PREFIX = "/docker/network/v1.0/network/"
ENDPOINT_PREFIX = "/docker/network/v1.0/endpoint/"
NODES = "/docker/nodes"


@dataclass(frozen=True)
class Result:
    check: str
    subject: str
    expected: str
    actual: str
    ok: bool

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        if self.ok:
            return f"{mark} {self.check:<22} {self.subject}: {self.actual}"
        return (
            f"{mark} {self.check:<22} {self.subject}: expected {self.expected}, got {self.actual}"
        )


def _r(check: str, subject: str, expected: Any, actual: Any, ok: bool | None = None) -> Result:
    exp, act = str(expected), str(actual)
    return Result(check, subject, exp, act, exp == act if ok is None else ok)


class Lab:
    """Clients to the lab's etcd members and daemons, built from a spec."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        bridge = spec["lab"].get("bridge")
        self.guard = RouteGuard(bridge) if bridge else None
        self.ssh_opts: list[str] = list(spec["lab"].get("sshOpts") or [])
        self._tunnels: list[Any] = []
        self.hosts: list[dict[str, Any]] = spec["hosts"]
        self.network: dict[str, Any] = spec["network"]
        self.containers: list[dict[str, Any]] = spec["containers"]
        tls = client_tls(spec["lab"].get("tlsDir"))
        self.etcd = {
            h["name"]: EtcdClient(h["etcdEndpoint"], self.guard, tls=tls) for h in self.hosts
        }
        self._docker: dict[str, Any] = {}

    def docker(self, host: str) -> Any:
        if host not in self._docker:
            import docker

            url = next(h["dockerHost"] for h in self.hosts if h["name"] == host)
            if url.startswith("ssh://"):
                from overlaylab.sshdocker import SshDockerTunnel

                tunnel = SshDockerTunnel(url, self.ssh_opts, self.guard)
                self._tunnels.append(tunnel)
                url = tunnel.url
            client = docker.DockerClient(base_url=url, version="1.41", timeout=20)
            try:
                client.ping()
            except Exception as e:
                client.close()
                raise LabError(f"dockerd on {host} ({url}) is unreachable: {e}") from None
            self._docker[host] = client
        return self._docker[host]

    def close(self) -> None:
        for client in self._docker.values():
            client.close()
        for tunnel in self._tunnels:
            tunnel.close()

    def any_etcd(self) -> EtcdClient:
        last: Exception | None = None
        for c in self.etcd.values():
            try:
                if c.health():
                    return c
            except LabError as e:
                last = e
        raise LabError(f"no etcd member is healthy ({last})")


# --- checks ------------------------------------------------------------------------------------


def check_etcd(lab: Lab) -> list[Result]:
    out: list[Result] = []
    expected = sorted(h["name"] for h in lab.hosts)
    for name, c in lab.etcd.items():
        try:
            healthy = c.health()
        except LabError as e:
            out.append(_r("etcd.member-healthy", name, "healthy", f"unreachable ({e})", False))
            continue
        out.append(
            _r("etcd.member-healthy", name, "healthy", "healthy" if healthy else "unhealthy")
        )
        if healthy:
            _, members = c.members()
            out.append(
                _r("etcd.member-list", name, expected, sorted(m.get("name") for m in members))
            )
    return out


def check_nodes(lab: Lab) -> list[Result]:
    node = lab.any_etcd().v2_get(NODES)
    have = set(node.children()) if node else set()
    out = [
        _r(
            "etcd.node-registered",
            h["name"],
            f"{NODES}/{h['advertise']}",
            f"{NODES}/{h['advertise']}" if h["advertise"] in have else "no such key",
        )
        for h in lab.hosts
    ]
    extra = sorted(have - {h["advertise"] for h in lab.hosts})
    out.append(
        _r(
            "etcd.nodes-exact",
            NODES,
            "only the stack's hosts",
            extra or "only the stack's hosts",
            not extra,
        )
    )
    return out


def network_id(lab: Lab, host: str) -> str | None:
    nets = lab.docker(host).networks.list(names=[lab.network["name"]])
    nets = [n for n in nets if n.name == lab.network["name"]]
    return nets[0].id if nets else None


def check_network(lab: Lab) -> list[Result]:
    out: list[Result] = []
    name = lab.network["name"]
    first = lab.hosts[0]["name"]
    net_id = network_id(lab, first)
    out.append(
        _r(
            "docker.network-exists",
            first,
            f"network {name}",
            f"network {name}" if net_id else "no such network",
        )
    )
    if not net_id:
        return out
    key = NETWORK_PREFIX + net_id
    node = lab.any_etcd().v2_get(key)
    out.append(_r("etcd.network-key", key, "present", "present" if node else "missing"))
    if node and node.value:
        data = json.loads(node.value)
        out.append(_r("etcd.network-name", key, name, data.get("name")))
        out.append(_r("etcd.network-type", key, "overlay", data.get("networkType")))
        pools = [
            json.loads(i["IPAMData"]).get("Pool")
            for i in json.loads(data.get("ipamV4Info") or "[]")
        ]
        out.append(_r("etcd.network-subnet", key, [lab.network["subnet"]], pools))
    for h in lab.hosts:
        try:
            nets = lab.docker(h["name"]).networks.list(names=[name])
        except Exception as e:
            out.append(
                _r("docker.network-global", h["name"], "reachable daemon", f"error: {e}", False)
            )
            continue
        nets = [n for n in nets if n.name == name]
        if not nets:
            out.append(_r("docker.network-id", h["name"], net_id[:12], "network not listed", False))
            continue
        n = nets[0]
        out.append(_r("docker.network-id", h["name"], net_id[:12], n.id[:12]))
        out.append(
            _r(
                "docker.network-global",
                h["name"],
                "overlay/global",
                f"{n.attrs.get('Driver')}/{n.attrs.get('Scope')}",
            )
        )
    return out


def container_addr(lab: Lab, c: dict[str, Any]) -> tuple[str, str] | None:
    """(ip, mac) of a test container on the overlay, or None if it is not there or not running."""
    import docker

    try:
        obj = lab.docker(c["host"]).containers.get(c["name"])
    except docker.errors.NotFound:
        return None
    if obj.status != "running":
        return None
    net = obj.attrs["NetworkSettings"]["Networks"].get(lab.network["name"])
    if not net:
        return None
    return net["IPAddress"], net["MacAddress"]


def check_endpoints(lab: Lab) -> list[Result]:
    out: list[Result] = []
    first = lab.hosts[0]["name"]
    net_id = network_id(lab, first)
    if not net_id:
        return [_r("etcd.endpoint", lab.network["name"], "network exists", "no network", False)]
    node = lab.any_etcd().v2_get(ENDPOINT_PREFIX + net_id)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for n in node.nodes if node else ():
        if n.value:
            ep = json.loads(n.value)
            by_name.setdefault(ep.get("name", ""), []).append(ep)
    locator = {h["name"]: h["address"] for h in lab.hosts}
    for c in lab.containers:
        eps = by_name.get(c["name"], [])
        addr = container_addr(lab, c)
        subject = f"{c['name']}@{c['host']}"
        if addr is None:
            out.append(
                _r(
                    "docker.container-running",
                    subject,
                    "running on the overlay",
                    "not running or not attached",
                    False,
                )
            )
        if len(eps) != 1:
            out.append(
                _r("etcd.endpoint-key", subject, "1 endpoint key", f"{len(eps)} keys", False)
            )
            continue
        ep = eps[0]
        iface = ep.get("ep_iface", {})
        out.append(_r("etcd.endpoint-locator", subject, locator[c["host"]], ep.get("locator")))
        if addr is not None:
            ip, mac = addr
            ep_ip = str(ipaddress.ip_interface(iface.get("addr", "0.0.0.0/32")).ip)
            out.append(_r("etcd.endpoint-ip", subject, ip, ep_ip))
            out.append(
                _r("etcd.endpoint-mac", subject, mac.lower(), str(iface.get("mac", "")).lower())
            )
    return out


def _ping(lab: Lab, src: dict[str, Any], target: str) -> tuple[bool, str]:
    try:
        res = (
            lab.docker(src["host"])
            .containers.get(src["name"])
            .exec_run(["ping", "-c", "1", "-W", "1", target])
        )
    except Exception as e:
        return False, f"exec failed: {e}"
    text = res.output.decode(errors="replace").strip().splitlines()
    if res.exit_code == 0:
        return True, "reply"
    return False, (text[-1] if text else f"exit {res.exit_code}")


def check_connectivity(lab: Lab) -> list[Result]:
    addrs = {c["name"]: container_addr(lab, c) for c in lab.containers}
    jobs: list[tuple[str, str, dict[str, Any], str]] = []
    for a in lab.containers:
        for b in lab.containers:
            if a is b:
                continue
            scope = "across hosts" if a["host"] != b["host"] else "same host"
            target = addrs[b["name"]]
            ip = target[0] if target is not None else None
            if ip is None:
                jobs.append((f"{a['name']} -> {b['name']} by IP ({scope})", "", a, ""))
            else:
                jobs.append((f"{a['name']} -> {b['name']} by IP ({scope})", ip, a, ip))
            jobs.append((f"{a['name']} -> {b['name']} by name ({scope})", b["name"], a, b["name"]))

    def one(job: tuple[str, str, dict[str, Any], str]) -> Result:
        subject, target, src, _ = job
        if addrs[src["name"]] is None:
            return _r("overlay.ping", subject, "reply", "source has no overlay address", False)
        if not target:
            return _r("overlay.ping", subject, "reply", "target has no overlay address", False)
        ok, actual = _ping(lab, src, target)
        if not ok and "bad address" in actual:
            actual += (
                f" ('{target}' does not resolve in {src['name']}: Docker's embedded DNS on"
                f" {src['host']} has no record of it)"
            )
        return _r("overlay.ping", subject, "reply", actual, ok)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, jobs))


def check_name_rule(lab: Lab) -> list[Result]:
    """A container name is unique across the overlay: a second one elsewhere is refused."""
    import docker

    if len(lab.hosts) < 2 or not lab.containers:
        return []
    c = lab.containers[0]
    other = next(h["name"] for h in lab.hosts if h["name"] != c["host"])
    subject = f"{c['name']} again on {other}"
    client = lab.docker(other)
    refused, detail = False, ""
    probe = None
    try:
        probe = client.containers.create(
            lab.spec.get("image", "busybox:latest"),
            ["sh", "-c", "sleep 5"],
            name=c["name"],
            network=lab.network["name"],
            detach=True,
        )
        probe.start()
        detail = "started"
    except docker.errors.APIError as e:
        refused = True
        detail = str(e.explanation or e)
    finally:
        if probe is not None:
            with contextlib.suppress(docker.errors.NotFound):
                probe.remove(force=True)
    out = [_r("overlay.name-unique", subject, "refused", "refused" if refused else detail, refused)]
    if refused:
        out[0] = _r("overlay.name-unique", subject, "refused", f"refused ({detail})", True)
    left = client.containers.list(all=True, filters={"name": f"^/{c['name']}$"})
    out.append(
        _r(
            "overlay.name-probe-clean",
            other,
            "no container left",
            "no container left" if not left else f"{len(left)} left",
        )
    )
    net_id = network_id(lab, c["host"])
    node = lab.any_etcd().v2_get(ENDPOINT_PREFIX + (net_id or "none"))
    names = [json.loads(n.value).get("name") for n in (node.nodes if node else ()) if n.value]
    out.append(
        _r(
            "overlay.name-probe-clean",
            f"endpoint keys named {c['name']}",
            1,
            names.count(c["name"]),
        )
    )
    return out


CONVERGING: list[tuple[str, Callable[[Lab], list[Result]]]] = [
    ("etcd", check_etcd),
    ("nodes", check_nodes),
    ("network", check_network),
    ("endpoints", check_endpoints),
    ("connectivity", check_connectivity),
]


def _run_group(lab: Lab, name: str, fn: Callable[[Lab], list[Result]]) -> list[Result]:
    try:
        return fn(lab)
    except LabError as e:
        return [_r(f"{name}", "lab", "reachable", str(e), False)]
    except Exception as e:
        return [_r(f"{name}", "lab", "no error", f"{type(e).__name__}: {e}", False)]


def validate(spec: dict[str, Any], timeout: float = 60, interval: float = 1.0) -> list[Result]:
    lab = Lab(spec)
    deadline = time.monotonic() + timeout
    results: list[Result] = []
    try:
        for name, fn in CONVERGING:
            while True:
                group = _run_group(lab, name, fn)
                if all(r.ok for r in group) or time.monotonic() >= deadline:
                    break
                time.sleep(interval)
            results.extend(group)
        results.extend(_run_group(lab, "name-rule", check_name_rule))
    finally:
        lab.close()
    return results


def summary(results: Iterable[Result], seconds: float) -> str:
    results = list(results)
    failed = [r for r in results if not r.ok]
    lines = [r.line() for r in failed] + [r.line() for r in results if r.ok]
    lines.append(f"{len(results)} checks, {len(failed)} failed, in {seconds:.1f}s")
    return "\n".join(lines)


def check_spec(spec: Any) -> None:
    """The spec's shape, so that a wrong file fails in one line rather than mid-check."""
    if not isinstance(spec, dict):
        raise ValueError("it is not a JSON object")
    for key, kind in (("lab", dict), ("hosts", list), ("network", dict), ("containers", list)):
        if not isinstance(spec.get(key), kind):
            raise ValueError(f"'{key}' is missing or not a {kind.__name__}")
    for h in spec["hosts"]:
        missing = {"name", "address", "dockerHost", "advertise", "etcdEndpoint"} - set(h)
        if missing:
            raise ValueError(f"host {h.get('name', '?')} lacks {', '.join(sorted(missing))}")


def load_spec(args: argparse.Namespace) -> dict[str, Any]:
    from overlaylab.spec import OUT_VALIDATION_SPEC, validation_spec

    if args.spec_json:
        return json.loads(args.spec_json)
    if args.spec:
        with open(args.spec) as f:
            return json.load(f)
    if args.outputs:
        with open(args.outputs) as f:
            return json.load(f)[OUT_VALIDATION_SPEC]
    from overlaylab.stackconfig import from_file

    return validation_spec(from_file(args.stack))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m overlaylab.validate", description=__doc__.split("\n")[0]
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--stack", default="local", help="derive the spec from stacks/Pulumi.STACK.yaml"
    )
    src.add_argument("--outputs", help="a file of `pulumi stack output --json`")
    src.add_argument("--spec", help="a file holding the validation spec")
    src.add_argument("--spec-json", help="the validation spec itself")
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait for convergence")
    p.add_argument("--json", action="store_true", help="print records as JSON")
    args = p.parse_args(argv)
    try:
        spec = load_spec(args)
        check_spec(spec)
    except (LabError, OSError, ValueError, KeyError) as e:
        print(f"error: cannot load the validation spec: {e}", file=sys.stderr)
        return 2
    start = time.monotonic()
    results = validate(spec, timeout=args.timeout)
    seconds = time.monotonic() - start
    failed = sum(not r.ok for r in results)
    if args.json:
        print(
            json.dumps(
                {
                    "results": [asdict(r) for r in results],
                    "summary": {
                        "count": len(results),
                        "failed": failed,
                        "seconds": round(seconds, 2),
                    },
                },
                indent=2,
            )
        )
    else:
        print(summary(results, seconds))
    if failed:
        print(f"validation failed: {failed} of {len(results)} checks", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
