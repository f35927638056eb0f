"""Benchmark: the program against the seed's steps by hand, at 2, 4 and 8 hosts (root; not a test).

For each size, alternately, round after round, in the same run on the same machine:
- the script: ``bench/seed_baseline.sh``, the seed's steps as a person would script them
  (ip, etcd, dockerd, the docker CLI; none of this project's code), up to its first ping,
  then its teardown;
- the program: ``__main__.py`` through the engine stand-in, up to a *validated* lab (every
  check of the validator, far more than one ping), then the validator alone a few times on
  that lab, then destroy;
and once per size, the program's evaluation under mocks (nothing touched).

Then the data plane: a 2-host lab of the program per underlay MTU, TCP throughput (iperf3, run
with ``nsenter`` in the namespaces) between the two containers over the overlay against the
same between the two hosts, interleaved (u, o, u, o, ...); the medians with their spread
(min-max, (max - min) / median), the ratio of the medians and the spread of the per-pair
ratios, the number of streams (``--streams``), where iperf3 ran (``--iperf-cpus`` pins it),
the offloads of the veths and the VXLAN device (ethtool -k, or ``ip -d link`` without
ethtool) and how busy the whole machine was meanwhile.

A failed round is a row of the table marked failed, with its first failed checks; the medians
are of the rounds that passed, so one failure hides no other figure; the script's failure rate
is a column. For each size, the critical path of the median program up (``bench.critpath``:
the chain of steps that bounds it, each with its start, duration and the wait before it) and
its floor (the CPU of this process and its descendants over the up, over the cores). Issues 8
and 15's targets are printed beside what was measured, with the floor. Machines here are
noisy: read the ratios, not the seconds.

    sudo venv/bin/python -m bench.bench_lab [--hosts 2 8 16] [--rounds 5] [--streams N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from bench import stoppable  # noqa: E402
from bench.critpath import Cpu, CpuMeter, critical_path, edges, path_lines  # noqa: E402
from overlaylab.config import LabConfig, parse  # noqa: E402
from overlaylab.config.sample import lab_config  # noqa: E402
from overlaylab.hosts import netns, proc  # noqa: E402
from overlaylab.hosts.dockerd import docker_api  # noqa: E402
from overlaylab.labdump import sandboxes  # noqa: E402
from overlaylab.leftovers import leftovers  # noqa: E402
from overlaylab.netrule import RouteGuard  # noqa: E402
from overlaylab.spec import OUT_VALIDATION_SPEC  # noqa: E402
from overlaylab.validate import validate  # noqa: E402
from standin import become_subreaper, destroy, run_program  # noqa: E402
from standin.plan import timeline  # noqa: E402

SEGMENT = "192.168.223"  # no test uses it; the script has its own (192.168.224)
LAB_ID = "bench"
SCRIPT = PROJECT_DIR / "bench" / "seed_baseline.sh"
SCRIPT_TIMEOUT = 300.0


def bench_config(hosts: int, mtu: int | None = None) -> dict[str, Any]:
    # its own segment and lab id: never the local stack's or the tests'
    raw = lab_config(hosts=hosts, lab_id=LAB_ID, segment=SEGMENT)
    if mtu is not None:
        raw["lab"]["mtu"] = mtu
    return raw


@dataclass
class Round:
    """One round of one side at one size; ``why`` is empty when it passed."""

    who: str  # "script" or "program"
    index: int
    up: float = 0.0
    down: float = 0.0
    validator_in_up: float = 0.0
    validator_alone: list[float] = field(default_factory=list)
    why: str = ""
    steps: list[Any] = field(default_factory=list)
    deps: dict[str, set[str]] = field(default_factory=dict)  # the resource graph's edges
    cpu: Cpu | None = None  # of the up: this process and its descendants
    phases: dict[str, float] = field(default_factory=dict)  # the script's: seconds into its up


# --- the script ------------------------------------------------------------------------------


def _script(action: str, n: int) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["bash", str(SCRIPT), action, str(n)],
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        # killed without its trap: `down` below (always run) removes what it left; what it
        # printed so far (its phases) is kept, after the reason (bytes here, despite text=True)
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        return subprocess.CompletedProcess(
            e.cmd, 124, "", f"timed out after {e.timeout:g}s\n{err or ''}"
        )


PHASE = "seed_baseline phase: "


def phases(stderr: str) -> dict[str, float]:
    """The phases the script reached, ``{what: seconds into its up}``, from its
    ``seed_baseline phase: <what> <seconds>`` lines."""
    out: dict[str, float] = {}
    for line in stderr.splitlines():
        if line.startswith(PHASE):
            what, _, secs = line[len(PHASE) :].rpartition(" ")
            try:
                out[what] = float(secs)
            except ValueError:
                continue
    return out


def _why(res: subprocess.CompletedProcess[str]) -> str:
    lines = [x for x in res.stderr.strip().splitlines() if not x.startswith(PHASE)]
    own = [x for x in lines if x.startswith("seed_baseline:")]
    return (own or lines or [f"exit {res.returncode}"])[0]


def baseline(n: int, index: int) -> Round:
    """``bench/seed_baseline.sh up N`` to its first ping, then ``down N``; down runs even
    after a failed up (the script's trap already cleaned up; down is then a no-op)."""
    rnd = Round("script", index)
    meter = CpuMeter()
    meter.start()
    t0 = time.monotonic()
    up = _script("up", n)
    rnd.up = time.monotonic() - t0
    rnd.cpu = meter.stop()
    rnd.phases = phases(up.stderr)
    t1 = time.monotonic()
    down = _script("down", n)
    rnd.down = time.monotonic() - t1
    if up.returncode != 0:
        rnd.why = "up: " + _why(up)
    elif down.returncode != 0:
        rnd.why = "down: " + _why(down)
    return rnd


def baseline_leftovers(n: int) -> str:
    res = _script("check", n)
    return "" if res.returncode == 0 else (res.stderr.strip() or f"check exit {res.returncode}")


# --- the program -----------------------------------------------------------------------------


def _first_fails(text: str, k: int = 2) -> str:
    fails = [x.strip() for x in text.splitlines() if x.strip().startswith("FAIL")][:k]
    return "; ".join(fails) or (text.strip().splitlines() or ["failed"])[0]


def program(raw: dict[str, Any], index: int, validator_runs: int) -> Round:
    """Up to a validated lab; the validator alone ``validator_runs`` times; destroy."""
    rnd = Round("program", index)
    with tempfile.TemporaryDirectory() as tmp:
        meter = CpuMeter()
        meter.start()
        run = run_program(raw, stack="bench", state_file=Path(tmp) / "bench.json")
        rnd.cpu = meter.stop()
        rnd.up, rnd.steps, rnd.deps = run.seconds, run.steps, edges(run.engine.records)
        try:
            if run.error is not None:
                rnd.why = "up: " + _first_fails(str(run.error))
            else:
                rnd.validator_in_up = next(
                    (r.seconds for r in run.engine.records if r.name == "validate-run"), 0.0
                )
                rnd.why = _validator_alone(run.outputs or {}, validator_runs, rnd.validator_alone)
        finally:
            t1 = time.monotonic()
            errors = destroy(run.engine.state())
            rnd.down = time.monotonic() - t1
        if errors:
            rnd.why = f"{rnd.why} destroy: {errors[0]}".strip()
    return rnd


def _validator_alone(outputs: dict[str, Any], runs: int, seconds: list[float]) -> str:
    """The validator ``runs`` times in this process on the running lab; why it failed or ""."""
    try:
        spec = outputs[OUT_VALIDATION_SPEC]
        for _ in range(runs):
            t0 = time.monotonic()
            results = validate(spec, timeout=30)
            seconds.append(time.monotonic() - t0)
            bad = [r for r in results if not r.ok]
            if bad:
                fails = "; ".join(f"FAIL {r.check} {r.subject}: {r.actual}" for r in bad[:2])
                return "validator alone: " + fails
    except Exception as e:  # a failed measurement is a row, not the end of the run
        return f"validator alone: {type(e).__name__}: {e}"
    return ""


def evaluation(raw: dict[str, Any], times: int = 5) -> float | None:
    """The program's evaluation under mocks, touching nothing (median seconds; None when it
    failed, which is printed)."""
    samples = []
    for _ in range(times):
        t0 = time.monotonic()
        run = run_program(raw, stack="bench", perform=False)
        samples.append(time.monotonic() - t0)
        if run.error is not None:
            print(f"  evaluation under mocks failed: {run.error}", flush=True)
            return None
    return statistics.median(samples)


# --- the data plane --------------------------------------------------------------------------

IPERF_PORT = 5201


class MeasureError(Exception):
    """A data-plane measurement that could not be made (it becomes the row's reason)."""


def _nsenter(ns: str, *argv: str) -> list[str]:
    return ["nsenter", f"--net={ns}", *argv]


def _route_inside(ns: str, address: str, dev: str) -> None:
    """The network rule inside a namespace: ``address`` is on ``dev``'s link, no gateway."""
    out = subprocess.run(
        _nsenter(ns, "ip", "-j", "route", "get", address), capture_output=True, text=True
    )
    routes = json.loads(out.stdout or "[]")
    got = routes[0] if routes else {}
    if got.get("dev") != dev or got.get("gateway"):
        raise MeasureError(f"refusing iperf3 to {address} from {ns}: its route is {got or out}")


@dataclass(frozen=True)
class Placement:
    """Where iperf3 runs: its streams and, when pinned, the CPUs of client and server."""

    streams: int = 1
    cpus: tuple[int, int] | None = None  # (client, server): iperf3 -A

    def describe(self) -> str:
        pin = (
            f"client pinned to CPU {self.cpus[0]}, server to CPU {self.cpus[1]} (iperf3 -A)"
            if self.cpus is not None
            else f"not pinned (any of {os.cpu_count()} cores)"
        )
        return (
            f"iperf3 on this machine, client and server by nsenter in the namespaces (underlay:"
            f" host 1's to host 2's; overlay: test1's to test2's); {self.streams} TCP"
            f" stream{'s' if self.streams != 1 else ''} (-P); {pin}"
        )


def iperf_argv(address: str, seconds: int, where: Placement) -> tuple[list[str], list[str]]:
    """The server's and the client's iperf3 arguments."""
    port = str(IPERF_PORT)
    server = ["iperf3", "-s", "-1", "-B", address, "-p", port]
    client = ["iperf3", "-J", "-c", address, "-p", port, "-t", str(seconds)]
    if where.streams != 1:
        client += ["-P", str(where.streams)]
    if where.cpus is not None:
        client += ["-A", str(where.cpus[0])]
        server += ["-A", str(where.cpus[1])]
    return server, client


def iperf_result(stdout: str, returncode: int, stderr: str, address: str) -> float:
    """Bits per second received (all streams) from iperf3 -J's report."""
    try:
        doc = json.loads(stdout or "{}")
    except json.JSONDecodeError:
        doc = {"error": f"not JSON: {stdout[:80]!r}"}
    if returncode != 0 or "error" in doc:
        raise MeasureError(f"iperf3 to {address} failed: {doc.get('error', stderr.strip())}")
    try:
        return float(doc["end"]["sum_received"]["bits_per_second"])
    except (KeyError, TypeError, ValueError) as e:
        raise MeasureError(f"iperf3 to {address}: no end.sum_received in its report ({e})") from e


def iperf(
    server_ns: str, client_ns: str, address: str, seconds: int, where: Placement = Placement()
) -> float:
    """TCP throughput, bits per second, from ``client_ns`` to ``address`` in ``server_ns``."""
    server_argv, client_argv = iperf_argv(address, seconds, where)
    server = subprocess.Popen(
        _nsenter(server_ns, *server_argv),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            ss = subprocess.run(
                _nsenter(server_ns, "ss", "-Hltn", f"sport = :{IPERF_PORT}"),
                capture_output=True,
                text=True,
            )
            if ss.stdout.strip():
                break
            if server.poll() is not None or time.monotonic() > deadline:
                raise MeasureError(f"iperf3 server in {server_ns} did not listen on {address}")
            time.sleep(0.05)
        res = subprocess.run(
            _nsenter(client_ns, *client_argv),
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        )
        return iperf_result(res.stdout, res.returncode, res.stderr, address)
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


# the offloads that change TCP throughput over veths and VXLAN (ethtool -k's names)
OFFLOADS = {
    "rx-checksumming": "rx-csum",
    "tx-checksumming": "tx-csum",
    "scatter-gather": "sg",
    "tcp-segmentation-offload": "tso",
    "generic-segmentation-offload": "gso",
    "generic-receive-offload": "gro",
    "rx-gro-list": "gro-list",
    "rx-udp-gro-forwarding": "udp-gro-fwd",
    "tx-udp_tnl-segmentation": "tnl-gso",
}


def parse_ethtool_k(text: str) -> dict[str, str]:
    """``ethtool -k DEV``'s lines ``name: on|off [fixed]`` -> {short name: "on", "off" or
    "off (fixed)"}, for the offloads in ``OFFLOADS``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition(":")
        if not sep or name not in OFFLOADS:
            continue
        words = value.split()
        if not words:
            continue
        out[OFFLOADS[name]] = words[0] + (" (fixed)" if "[fixed]" in value else "")
    return out


def parse_ip_details(text: str) -> dict[str, str]:
    """``ip -d -j link show DEV``: the segmentation and receive sizes the kernel exposes
    there (``gso_max_size``, ``gso_max_segs``, ``gro_max_size``, ``tso_max_size``), the
    only offload facts without ethtool."""
    try:
        links = json.loads(text or "[]")
    except json.JSONDecodeError:
        return {}
    link = links[0] if isinstance(links, list) and links else {}
    keys = ("gso_max_size", "gso_max_segs", "gro_max_size", "tso_max_size")
    return {k: str(link[k]) for k in keys if isinstance(link, dict) and k in link}


@dataclass(frozen=True)
class Offloads:
    device: str  # what it is, e.g. "test1 eth0 (veth)"
    source: str  # "ethtool -k" or "ip -d link (no ethtool: no feature flags)"
    settings: dict[str, str]
    why: str = ""  # why nothing was read

    def line(self) -> str:
        got = ", ".join(f"{k} {v}" for k, v in self.settings.items()) or self.why or "nothing"
        return f"{self.device}: {got} [{self.source}]"


def offloads(ns: str, dev: str, what: str) -> Offloads:
    """The offload settings of ``dev`` in the namespace ``ns``: ethtool -k when ethtool is
    installed, else what ``ip -d link`` exposes (the device's features are not in /sys)."""
    if shutil.which("ethtool"):
        res = subprocess.run(
            _nsenter(ns, "ethtool", "-k", dev), capture_output=True, text=True, timeout=10
        )
        return Offloads(what, "ethtool -k", parse_ethtool_k(res.stdout), res.stderr.strip())
    res = subprocess.run(
        _nsenter(ns, "ip", "-d", "-j", "link", "show", "dev", dev),
        capture_output=True,
        text=True,
        timeout=10,
    )
    return Offloads(
        what,
        "ip -d link; ethtool is not installed, so no feature flags (apt-get install ethtool)",
        parse_ip_details(res.stdout),
        res.stderr.strip(),
    )


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @property
    def relative(self) -> float:
        """(max - min) / median: 0.1 means the runs lie within 10 % of their median."""
        return (self.high - self.low) / self.median if self.median else 0.0


def spread(xs: Sequence[float]) -> Spread | None:
    return Spread(statistics.median(xs), min(xs), max(xs)) if xs else None


def schedule(runs: int) -> list[str]:
    """The order of the measurements: underlay and overlay interleaved, u, o, u, o, ..., so
    whatever else the machine does hits both alike."""
    return ["underlay", "overlay"] * runs


@dataclass
class Dataplane:
    mtu: int
    underlay: list[float] = field(default_factory=list)
    overlay: list[float] = field(default_factory=list)
    container_mtu: int = 0
    why: str = ""
    where: Placement = Placement()
    offloads: list[Offloads] = field(default_factory=list)
    machine_busy: float | None = None  # the whole machine's busy share during the runs

    def ratio(self) -> float | None:
        if not self.underlay or not self.overlay:
            return None
        return statistics.median(self.overlay) / statistics.median(self.underlay)

    def ratios(self) -> list[float]:
        """Each overlay run over the underlay run just before it (interleaved pairs)."""
        return [o / u for u, o in zip(self.underlay, self.overlay, strict=False) if u]


def dataplane(mtu: int, seconds: int, runs: int, where: Placement = Placement()) -> Dataplane:
    """A 2-host lab of the program with ``lab.mtu`` = ``mtu``: iperf3 host 1 -> host 2 (the
    underlay) and test1 -> test2 (the overlay), interleaved (``schedule``), ``runs`` times
    each; the offloads of the veths and the VXLAN device read first."""
    raw = bench_config(2, mtu)
    cfg = parse(raw)
    res = Dataplane(mtu, where=where)
    with tempfile.TemporaryDirectory() as tmp:
        run = run_program(raw, stack="bench", state_file=Path(tmp) / "dp.json")
        try:
            if run.error is not None:
                res.why = "up: " + _first_fails(str(run.error))
                return res
            h1, h2 = cfg.hosts[0], cfg.hosts[1]
            ns1, ns2 = (f"/run/netns/{h.netns(cfg.lab_id)}" for h in (h1, h2))
            c1 = docker_api(cfg.docker_socket(h1)).inspect_container("test1")
            c2 = docker_api(cfg.docker_socket(h2)).inspect_container("test2")
            cns1, cns2 = (f"/proc/{c['State']['Pid']}/ns/net" for c in (c1, c2))
            ip2 = c2["NetworkSettings"]["Networks"]["demo"]["IPAddress"]
            RouteGuard(cfg.local_bridge).check(h2.address)  # the bridge holds the segment
            _route_inside(ns1, h2.address, "eth0")
            _route_inside(cns1, ip2, "eth0")  # the container's overlay interface
            link = subprocess.run(
                _nsenter(cns1, "ip", "-j", "link", "show", "eth0"), capture_output=True, text=True
            )
            res.container_mtu = int((json.loads(link.stdout or "[{}]") or [{}])[0].get("mtu", 0))
            res.offloads.append(offloads(ns1, "eth0", f"{h1.name} eth0 (underlay veth)"))
            res.offloads.append(offloads(cns1, "eth0", "test1 eth0 (overlay veth)"))
            for sb in sandboxes(cfg, h1)[:1]:
                res.offloads.append(offloads(sb.path, sb.vxlan, f"{h1.name} {sb.vxlan} (VXLAN)"))
            meter = CpuMeter()
            meter.start()
            for what in schedule(runs):
                if what == "underlay":
                    res.underlay.append(iperf(ns2, ns1, h2.address, seconds, where))
                else:
                    res.overlay.append(iperf(cns2, cns1, ip2, seconds, where))
            res.machine_busy = meter.stop().machine_busy
        except Exception as e:  # a failed measurement is a row, not the end of the run
            res.why = f"{type(e).__name__}: {e}"
        finally:
            errors = destroy(run.engine.state())
            if errors:
                res.why = f"{res.why} destroy: {errors[0]}".strip()
    left = _settled(lambda: leftovers(cfg))
    if left:
        raise SystemExit(f"benchmark left {left}")
    return res


# --- the report ------------------------------------------------------------------------------


def _med(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _x(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}"


@dataclass
class Size:
    n: int
    rounds: list[Round] = field(default_factory=list)
    evaluation: float | None = None

    def ok(self, who: str) -> list[Round]:
        return [r for r in self.rounds if r.who == who and not r.why]

    def failed(self) -> list[Round]:
        return [r for r in self.rounds if r.why]

    def failure_rate(self, who: str) -> tuple[int, int]:
        """(rounds failed, rounds) of one side."""
        mine = [r for r in self.rounds if r.who == who]
        return sum(bool(r.why) for r in mine), len(mine)

    def med(self, who: str, what: str) -> float | None:
        if what == "validator_alone":
            return _med([x for r in self.ok(who) for x in r.validator_alone])
        return _med([getattr(r, what) for r in self.ok(who)])

    def floor(self, who: str) -> float | None:
        """The median up floor (CPU of the up / cores) of the rounds that passed."""
        return _med([r.cpu.floor for r in self.ok(who) if r.cpu is not None])

    def up_ratio(self) -> float | None:
        return _ratio(self.med("program", "up"), self.med("script", "up"))

    def best_up_ratio(self) -> float | None:
        """The program's median up over the script's fastest passed up: the script's up is
        bimodal (its members' start, seed_baseline.sh), so its median can be the slow mode."""
        ups = [r.up for r in self.ok("script")]
        return _ratio(self.med("program", "up"), min(ups) if ups else None)

    def floor_ratio(self) -> float | None:
        """The program's floor over the script's up: the best up ratio this machine allows."""
        return _ratio(self.floor("program"), self.med("script", "up"))

    def down_ratio(self) -> float | None:
        return _ratio(self.med("program", "down"), self.med("script", "down"))

    def median_round(self, who: str = "program") -> Round | None:
        """The passed round whose up is the median's (the lower of the two middle ones), or,
        none passed, the last round."""
        ok = sorted(self.ok(who), key=lambda r: r.up)
        if ok:
            return ok[(len(ok) - 1) // 2]
        mine = [r for r in self.rounds if r.who == who]
        return mine[-1] if mine else None


def _rate(failed: int, total: int) -> str:
    return "-" if not total else f"{failed}/{total} ({failed / total:.0%})"


def table(sizes: list[Size]) -> list[str]:
    lines = [
        "| hosts | rounds ok (script, program) | script failure rate | script up | program up"
        " | up ratio | program up floor (CPU / cores) | script down | program down | down ratio"
        " | validator in up | validator alone | evaluation (mocks) | failed rounds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in sizes:
        total = {w: sum(r.who == w for r in s.rounds) for w in ("script", "program")}
        failed = "; ".join(f"{r.who} r{r.index}: {r.why[:160]}" for r in s.failed()) or "none"
        lines.append(
            f"| {s.n} | {len(s.ok('script'))}/{total['script']},"
            f" {len(s.ok('program'))}/{total['program']} | {_rate(*s.failure_rate('script'))}"
            f" | {_s(s.med('script', 'up'))} | {_s(s.med('program', 'up'))} | {_x(s.up_ratio())}"
            f" | {_s(s.floor('program'))} | {_s(s.med('script', 'down'))}"
            f" | {_s(s.med('program', 'down'))}"
            f" | {_x(s.down_ratio())} | {_s(s.med('program', 'validator_in_up'))}"
            f" | {_s(s.med('program', 'validator_alone'))} | {_s(s.evaluation)} | {failed} |"
        )
    return lines


def critical_report(s: Size) -> list[str]:
    """The critical path of the size's median program up, and its CPU floor."""
    rnd = s.median_round("program")
    if rnd is None or not rnd.steps:
        return [f"  {s.n} hosts: no program up to read"]
    state = "passed" if not rnd.why else f"FAILED {rnd.why[:120]}"
    lines = [f"  {s.n} hosts, program round {rnd.index} (up {rnd.up:.2f}s, {state}):"]
    lines += ["  " + x for x in path_lines(critical_path(rnd.steps, rnd.deps), rnd.up)]
    if rnd.cpu is not None:
        lines.append(f"    floor: {rnd.cpu.line()}")
    script = [r.cpu for r in s.ok("script") if r.cpu is not None]
    if script:
        c = sorted(script, key=lambda c: c.wall)[(len(script) - 1) // 2]
        lines.append(f"    the script's up (median round): {c.line()}")
    return lines


def phase_report(s: Size) -> list[str]:
    """Each script round's phases, seconds into its up (the script prints them)."""
    lines = []
    for r in (r for r in s.rounds if r.who == "script"):
        marks = ", ".join(f"{what} {t:.2f}" for what, t in r.phases.items()) or "none"
        state = "passed" if not r.why else "FAILED"
        lines.append(f"  {s.n} hosts, script round {r.index} (up {r.up:.2f}s, {state}): {marks}")
    return lines


def _verdict(value: float | None, limit: float, at_most: bool = True) -> str:
    if value is None:
        return "not measured"
    return "met" if (value <= limit if at_most else value >= limit) else "missed"


def targets(sizes: list[Size], planes: list[Dataplane], eval8: float | None) -> list[str]:
    by_n = {s.n: s for s in sizes}
    rows: list[tuple[str, str, str, str]] = []
    for n in sorted({2, 8} | ({16} & set(by_n))):
        s = by_n.get(n)
        r = s.up_ratio() if s is not None else None
        fl = s.floor_ratio() if s is not None else None
        floor = "-" if fl is None else f"{fl:.2f} (CPU / cores over the script's up)"
        best = s.best_up_ratio() if s is not None else None
        if best is not None:
            floor += f"; {best:.2f} against the script's fastest round"
        rows.append((f"program up <= 0.8x script up, {n} hosts", _x(r), _verdict(r, 0.8), floor))
    for s in sizes:
        r = s.down_ratio()
        rows.append(
            (f"program down <= 0.8x script down, {s.n} hosts", _x(r), _verdict(r, 0.8), "-")
        )
    if 8 in by_n and 16 in by_n:
        r = _ratio(by_n[16].med("program", "up"), by_n[8].med("program", "up"))
        fl = _ratio(by_n[16].floor("program"), by_n[8].med("program", "up"))
        floor = "-" if fl is None else f"{fl:.2f} (16-host floor over the 8-host up)"
        rows.append(("16-host up <= 2.2x the 8-host up", _x(r), _verdict(r, 2.2), floor))
    for n, limit in ((8, 1.0), (2, 0.2)):
        v = by_n[n].med("program", "validator_alone") if n in by_n else None
        rows.append((f"validator alone, {n} hosts, <= {limit} s", _s(v), _verdict(v, limit), "-"))
    rows.append(("evaluation under mocks, 8 hosts, <= 1 s", _s(eval8), _verdict(eval8, 1.0), "-"))
    for p in planes:
        want = 0.90 if p.mtu >= 9000 else 0.78
        r = p.ratio()
        sp = spread(p.ratios())
        what = f"overlay/underlay TCP, underlay MTU {p.mtu}, >= {want:.2f}"
        pairs = "-" if sp is None else f"pairs {sp.low:.2f}-{sp.high:.2f}"
        rows.append((what, _x(r), _verdict(r, want, at_most=False), pairs))
    return ["| target | measured | | floor / spread |", "| --- | --- | --- | --- |"] + [
        f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows
    ]


def _spread(xs: Sequence[float], unit: str = "gbit") -> str:
    sp = spread(xs)
    if sp is None:
        return "-"
    if unit == "gbit":
        return f"{gbit(sp.median)} ({sp.low / 1e9:.1f}-{sp.high / 1e9:.1f}, {sp.relative:.0%})"
    return f"{sp.median:.2f} ({sp.low:.2f}-{sp.high:.2f}, {sp.relative:.0%})"


def dataplane_table(planes: list[Dataplane]) -> list[str]:
    lines = [
        "| underlay MTU | container MTU | underlay TCP | overlay TCP | ratio of medians"
        " | ratio per pair | runs (each) | streams | machine busy | failed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in planes:
        busy = "-" if p.machine_busy is None else f"{p.machine_busy:.0%}"
        lines.append(
            f"| {p.mtu} | {p.container_mtu or '-'} | {_spread(p.underlay)} | {_spread(p.overlay)}"
            f" | {_x(p.ratio())} | {_spread(p.ratios(), 'ratio')} | {len(p.overlay)}"
            f" | {p.where.streams} | {busy} | {p.why[:160] or 'none'} |"
        )
    return lines


def dataplane_notes(planes: list[Dataplane]) -> list[str]:
    """Where iperf3 ran and the offloads in effect, per MTU."""
    lines = []
    for p in planes:
        lines.append(f"  MTU {p.mtu}: {p.where.describe()}; runs interleaved u, o, u, o, ...")
        lines += [f"    {o.line()}" for o in p.offloads] or ["    offloads: not read"]
    return lines


def gbit(x: float | None) -> str:
    return "-" if x is None else f"{x / 1e9:.1f} Gbit/s"


def _progress(n: int, rnd: Round) -> None:
    extra = ""
    if rnd.who == "program" and rnd.validator_alone:
        extra = f", validator alone {statistics.median(rnd.validator_alone):.2f}s"
    if rnd.cpu is not None:
        extra += f", up floor {rnd.cpu.floor:.2f}s"
    if "members healthy" in rnd.phases:
        extra += f", members healthy at {rnd.phases['members healthy']:.2f}s"
    state = f"FAILED {rnd.why}" if rnd.why else "ok"
    print(
        f"  {n} hosts, {rnd.who} round {rnd.index}: up {rnd.up:.2f}s, down {rnd.down:.2f}s"
        f"{extra}: {state}",
        flush=True,
    )


#: How long a round's leftovers may take to go: the engine's reaper reaps the daemons it
#: adopted every 0.3 s (standin/reaper.py), so a member killed by the destroy's last verbs
#: can still be a zombie for that long (the lab tests wait the same: LabFixture.settle).
SETTLE = 2.0


def _settled(look: Callable[[], Any]) -> Any:
    """What ``look`` still finds once the reaper had up to SETTLE seconds."""
    deadline = time.monotonic() + SETTLE
    left = look()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = look()
    return left


def measure(n: int, rounds: int, validator_runs: int, show_timeline: bool) -> Size:
    raw = bench_config(n)
    cfg = parse(raw)
    size = Size(n)
    for i in range(1, rounds + 1):  # alternately, so drift hits both alike
        for who in ("script", "program"):
            rnd = baseline(n, i) if who == "script" else program(raw, i, validator_runs)
            size.rounds.append(rnd)
            _progress(n, rnd)
            left = _settled(
                (lambda: leftovers(cfg)) if rnd.who == "program" else lambda: baseline_leftovers(n)
            )
            if left:
                raise SystemExit(f"the {rnd.who} left {left}")
    size.evaluation = evaluation(raw)
    if show_timeline:
        last = [r for r in size.rounds if r.who == "program"][-1]
        print(f"\n  timeline of program round {last.index} at {n} hosts:")
        print("    start     end   took  step     type           resource")
        for line in timeline(last.steps):
            print("  " + line)
    return size


def report(sizes: list[Size], planes: list[Dataplane], eval8: float | None) -> None:
    print("\nUp: the program to a validated lab, the script to its first ping. Medians of the")
    print("rounds that passed; ratio = program / script; the floor: the CPU the up's processes")
    print("used (this process and its descendants: etcd, dockerd, containerd, the steps) over")
    print("the cores.\n")
    print("\n".join(table(sizes)))
    if sizes:
        print("\nThe critical path of the median program up (the step that ended last, then the")
        print("dependency of it that ended last, and so on; seconds from the up's start):\n")
        for s in sizes:
            print("\n".join(critical_report(s)))
        print("\nThe script's phases, seconds into its up (its members' start is bimodal: under")
        print("a second, or a second per peer when they ask each other whether the cluster was")
        print("bootstrapped; seed_baseline.sh):\n")
        for s in sizes:
            print("\n".join(phase_report(s)))
    if planes:
        print("\nData plane (iperf3 TCP, 2 hosts, host 1 -> host 2, test1 -> test2): median")
        print("(min-max, relative spread = (max - min) / median):\n")
        print("\n".join(dataplane_table(planes)))
        print()
        print("\n".join(dataplane_notes(planes)))
    print("\nThe targets (issues 8 and 15):\n")
    print("\n".join(targets(sizes, planes, eval8)))


def machine() -> str:
    return f"{socket.gethostname()}, {os.cpu_count()} cores"


def plot(sizes: list[Size], path: Path, when: str, where: str) -> None:
    """Up and down time against host count, the program's and the script's: the median of the
    rounds that passed as a line, each passed round as a dot; ``when`` and ``where`` (the date,
    the machine) in the title. A PNG at ``path``, drawn with matplotlib's Agg backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharex=True)
    ns = sorted({s.n for s in sizes})
    for ax, what in zip(axes, ("up", "down"), strict=True):
        for who, style, colour in (("program", "o-", "#1f77b4"), ("script", "s--", "#ff7f0e")):
            med = [(s.n, s.med(who, what)) for s in sizes]
            pts = [(n, m) for n, m in med if m is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, color=colour, label=f"{who} (median)")
            dots = [(s.n, getattr(r, what)) for s in sizes for r in s.ok(who)]
            if dots:
                ax.plot(*zip(*dots, strict=True), ".", color=colour, alpha=0.35)
        ax.set_title(f"{what}: {'to a validated lab / first ping' if what == 'up' else 'teardown'}")
        ax.set_xlabel("hosts")
        ax.set_ylabel("seconds")
        ax.set_xticks(ns)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    fig.suptitle(f"bench.bench_lab: the program against the seed's script; {when}; {where}")
    fig.tight_layout()
    fig.savefig(path, format="png")


def bad_args(
    hosts: Sequence[int],
    rounds: int,
    streams: int = 1,
    iperf_runs: int = 1,
    cpus: Sequence[int] | None = None,
    cores: int | None = None,
) -> str:
    """What is wrong with the arguments and how to fix it, or ""."""
    cores = cores or os.cpu_count() or 1
    if any(n < 2 for n in hosts) or rounds < 1:
        return "--hosts must be 2 or more each, --rounds at least 1"
    if streams < 1 or iperf_runs < 1:
        return "--streams and --iperf-runs must be at least 1"
    if cpus is not None and any(c < 0 or c >= cores for c in cpus):
        got = " ".join(map(str, cpus))
        return f"--iperf-cpus: this machine's CPUs are 0 to {cores - 1}; got {got}"
    return ""


def arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, checked (``bad_args``): one line saying what is wrong, exit 2."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--hosts", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--validator-runs", type=int, default=3, help="per program round")
    p.add_argument(
        "--dataplane-mtu",
        type=int,
        nargs="*",
        default=[1500, 9000],
        help="underlay MTUs for the iperf3 comparison; none to skip it",
    )
    p.add_argument("--iperf-seconds", type=int, default=4)
    p.add_argument("--iperf-runs", type=int, default=3, help="of each, interleaved u, o, u, o")
    p.add_argument("--streams", type=int, default=1, help="iperf3 TCP streams (-P)")
    p.add_argument(
        "--iperf-cpus",
        type=int,
        nargs=2,
        metavar=("CLIENT", "SERVER"),
        help="pin iperf3's client and server to these CPUs (iperf3 -A); default: not pinned",
    )
    p.add_argument(
        "--timeline", action="store_true", help="print the last program up's timeline per size"
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=Path("bench_lab.png"),
        metavar="PNG",
        help="where to draw up and down time against host count (default: %(default)s)",
    )
    args = p.parse_args(argv)
    why = bad_args(args.hosts, args.rounds, args.streams, args.iperf_runs, args.iperf_cpus)
    if why:
        p.error(why)
    return args


def main() -> int:
    args = arguments()
    stoppable()
    if args.dataplane_mtu and shutil.which("iperf3") is None:
        raise SystemExit(
            "iperf3 is missing (the data-plane comparison needs it): apt-get install iperf3"
            " (or pass --dataplane-mtu with no value to skip it)"
        )
    netns.preflight()
    become_subreaper()
    proc.set_quiet()  # keep the table readable
    print(
        f"{time.strftime('%a %d %b %Y %H:%M:%S %Z')}; {os.cpu_count()} cores;"
        f" {platform.platform()}; {' '.join(sys.argv)}",
        flush=True,
    )
    for n in args.hosts:
        cfg: LabConfig = parse(bench_config(n))
        if leftovers(cfg) or baseline_leftovers(n):
            raise SystemExit(f"a lab is left: {leftovers(cfg)} {baseline_leftovers(n)}")
    sizes: list[Size] = []
    planes: list[Dataplane] = []
    where = Placement(args.streams, tuple(args.iperf_cpus) if args.iperf_cpus else None)
    eval8: float | None = None
    try:
        for n in args.hosts:
            sizes.append(measure(n, args.rounds, args.validator_runs, args.timeline))
        eval8 = next((s.evaluation for s in sizes if s.n == 8), None)
        if eval8 is None:
            eval8 = evaluation(bench_config(8))
        for mtu in args.dataplane_mtu:
            planes.append(dataplane(mtu, args.iperf_seconds, args.iperf_runs, where))
            print(f"  data plane at MTU {mtu}: ratio {_x(planes[-1].ratio())}", flush=True)
    finally:  # what was measured is printed even when a later step stops the run
        report(sizes, planes, eval8)
        if sizes:
            try:
                plot(sizes, args.plot, time.strftime("%Y-%m-%d %H:%M %Z"), machine())
                print(f"\nplot: {args.plot}")
            except (OSError, ValueError, ImportError) as e:
                print(f"\nplot not drawn: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
