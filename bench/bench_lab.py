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
same between the two hosts, alternately; the ratio of the medians.

A failed round is a row of the table marked failed, with its first failed checks; the medians
are of the rounds that passed, so one failure hides no other figure. Issue 8's targets are
printed beside what was measured. Machines here are noisy: read the ratios, not the seconds.

    sudo venv/bin/python -m bench.bench_lab [--hosts 2 4 8] [--rounds 3]
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from overlaylab.config import LabConfig, parse  # noqa: E402
from overlaylab.config.sample import lab_config  # noqa: E402
from overlaylab.hosts import netns, proc  # noqa: E402
from overlaylab.hosts.dockerd import docker_api  # noqa: E402
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
        # killed without its trap: `down` below (always run) removes what it left
        return subprocess.CompletedProcess(e.cmd, 124, "", f"timed out after {e.timeout:g}s")


def _why(res: subprocess.CompletedProcess[str]) -> str:
    lines = res.stderr.strip().splitlines()
    own = [x for x in lines if x.startswith("seed_baseline:")]
    return (own or lines or [f"exit {res.returncode}"])[0]


def baseline(n: int, index: int) -> Round:
    """``bench/seed_baseline.sh up N`` to its first ping, then ``down N``; down runs even
    after a failed up (the script's trap already cleaned up; down is then a no-op)."""
    rnd = Round("script", index)
    t0 = time.monotonic()
    up = _script("up", n)
    rnd.up = time.monotonic() - t0
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
        run = run_program(raw, stack="bench", state_file=Path(tmp) / "bench.json")
        rnd.up, rnd.steps = run.seconds, run.steps
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


def iperf(server_ns: str, client_ns: str, address: str, seconds: int) -> float:
    """TCP throughput, bits per second, from ``client_ns`` to ``address`` in ``server_ns``."""
    server = subprocess.Popen(
        _nsenter(server_ns, "iperf3", "-s", "-1", "-B", address, "-p", str(IPERF_PORT)),
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
            _nsenter(
                client_ns, "iperf3", "-J", "-c", address, "-p", str(IPERF_PORT), "-t", str(seconds)
            ),
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        )
        doc = json.loads(res.stdout or "{}")
        if res.returncode != 0 or "error" in doc:
            raise MeasureError(f"iperf3 to {address} failed: {doc.get('error', res.stderr)}")
        return float(doc["end"]["sum_received"]["bits_per_second"])
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


@dataclass
class Dataplane:
    mtu: int
    underlay: list[float] = field(default_factory=list)
    overlay: list[float] = field(default_factory=list)
    container_mtu: int = 0
    why: str = ""

    def ratio(self) -> float | None:
        if not self.underlay or not self.overlay:
            return None
        return statistics.median(self.overlay) / statistics.median(self.underlay)


def dataplane(mtu: int, seconds: int, runs: int) -> Dataplane:
    """A 2-host lab of the program with ``lab.mtu`` = ``mtu``: iperf3 host 1 -> host 2 (the
    underlay) and test1 -> test2 (the overlay), alternately ``runs`` times each."""
    raw = bench_config(2, mtu)
    cfg = parse(raw)
    res = Dataplane(mtu)
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
            for _ in range(runs):
                res.underlay.append(iperf(ns2, ns1, h2.address, seconds))
                res.overlay.append(iperf(cns2, cns1, ip2, seconds))
        except Exception as e:  # a failed measurement is a row, not the end of the run
            res.why = f"{type(e).__name__}: {e}"
        finally:
            errors = destroy(run.engine.state())
            if errors:
                res.why = f"{res.why} destroy: {errors[0]}".strip()
    if leftovers(cfg):
        raise SystemExit(f"benchmark left {leftovers(cfg)}")
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

    def med(self, who: str, what: str) -> float | None:
        if what == "validator_alone":
            return _med([x for r in self.ok(who) for x in r.validator_alone])
        return _med([getattr(r, what) for r in self.ok(who)])

    def up_ratio(self) -> float | None:
        return _ratio(self.med("program", "up"), self.med("script", "up"))

    def down_ratio(self) -> float | None:
        return _ratio(self.med("program", "down"), self.med("script", "down"))


def table(sizes: list[Size]) -> list[str]:
    lines = [
        "| hosts | rounds ok (script, program) | script up | program up | up ratio"
        " | script down | program down | down ratio | validator in up | validator alone"
        " | evaluation (mocks) | failed rounds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in sizes:
        total = {w: sum(r.who == w for r in s.rounds) for w in ("script", "program")}
        failed = "; ".join(f"{r.who} r{r.index}: {r.why[:160]}" for r in s.failed()) or "none"
        lines.append(
            f"| {s.n} | {len(s.ok('script'))}/{total['script']},"
            f" {len(s.ok('program'))}/{total['program']}"
            f" | {_s(s.med('script', 'up'))} | {_s(s.med('program', 'up'))} | {_x(s.up_ratio())}"
            f" | {_s(s.med('script', 'down'))} | {_s(s.med('program', 'down'))}"
            f" | {_x(s.down_ratio())} | {_s(s.med('program', 'validator_in_up'))}"
            f" | {_s(s.med('program', 'validator_alone'))} | {_s(s.evaluation)} | {failed} |"
        )
    return lines


def _verdict(value: float | None, limit: float, at_most: bool = True) -> str:
    if value is None:
        return "not measured"
    return "met" if (value <= limit if at_most else value >= limit) else "missed"


def targets(sizes: list[Size], planes: list[Dataplane], eval8: float | None) -> list[str]:
    by_n = {s.n: s for s in sizes}
    rows: list[tuple[str, str, str]] = []
    for n in (2, 8):
        r = by_n[n].up_ratio() if n in by_n else None
        rows.append((f"program up <= 0.8x script up, {n} hosts", _x(r), _verdict(r, 0.8)))
    for s in sizes:
        r = s.down_ratio()
        rows.append((f"program down <= 0.8x script down, {s.n} hosts", _x(r), _verdict(r, 0.8)))
    for n, limit in ((8, 1.0), (2, 0.2)):
        v = by_n[n].med("program", "validator_alone") if n in by_n else None
        rows.append((f"validator alone, {n} hosts, <= {limit} s", _s(v), _verdict(v, limit)))
    rows.append(("evaluation under mocks, 8 hosts, <= 1 s", _s(eval8), _verdict(eval8, 1.0)))
    for p in planes:
        want = 0.90 if p.mtu >= 9000 else 0.78
        r = p.ratio()
        what = f"overlay/underlay TCP, underlay MTU {p.mtu}, >= {want:.2f}"
        rows.append((what, _x(r), _verdict(r, want, at_most=False)))
    return ["| target | measured | |", "| --- | --- | --- |"] + [
        f"| {a} | {b} | {c} |" for a, b, c in rows
    ]


def dataplane_table(planes: list[Dataplane]) -> list[str]:
    lines = [
        "| underlay MTU | container MTU | underlay TCP | overlay TCP | ratio | runs | failed |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in planes:
        u, o = _med(p.underlay), _med(p.overlay)
        lines.append(
            f"| {p.mtu} | {p.container_mtu or '-'} | {gbit(u)} | {gbit(o)} | {_x(p.ratio())}"
            f" | {len(p.overlay)} | {p.why[:160] or 'none'} |"
        )
    return lines


def gbit(x: float | None) -> str:
    return "-" if x is None else f"{x / 1e9:.1f} Gbit/s"


def _progress(n: int, rnd: Round) -> None:
    extra = ""
    if rnd.who == "program" and rnd.validator_alone:
        extra = f", validator alone {statistics.median(rnd.validator_alone):.2f}s"
    state = f"FAILED {rnd.why}" if rnd.why else "ok"
    print(
        f"  {n} hosts, {rnd.who} round {rnd.index}: up {rnd.up:.2f}s, down {rnd.down:.2f}s"
        f"{extra}: {state}",
        flush=True,
    )


def measure(n: int, rounds: int, validator_runs: int, show_timeline: bool) -> Size:
    raw = bench_config(n)
    cfg = parse(raw)
    size = Size(n)
    for i in range(1, rounds + 1):  # alternately, so drift hits both alike
        for who in ("script", "program"):
            rnd = baseline(n, i) if who == "script" else program(raw, i, validator_runs)
            size.rounds.append(rnd)
            _progress(n, rnd)
            left = leftovers(cfg) if rnd.who == "program" else baseline_leftovers(n)
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
    print("rounds that passed; ratio = program / script.\n")
    print("\n".join(table(sizes)))
    if planes:
        print("\nData plane (iperf3 TCP, 2 hosts, host 1 -> host 2, test1 -> test2):\n")
        print("\n".join(dataplane_table(planes)))
    print("\nIssue 8's targets:\n")
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


def main() -> int:
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
    p.add_argument("--iperf-runs", type=int, default=3)
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
    args = p.parse_args()
    if any(n < 2 for n in args.hosts) or args.rounds < 1:
        p.error("--hosts must be 2 or more each, --rounds at least 1")
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
    eval8: float | None = None
    try:
        for n in args.hosts:
            sizes.append(measure(n, args.rounds, args.validator_runs, args.timeline))
        eval8 = next((s.evaluation for s in sizes if s.n == 8), None)
        if eval8 is None:
            eval8 = evaluation(bench_config(8))
        for mtu in args.dataplane_mtu:
            planes.append(dataplane(mtu, args.iperf_seconds, args.iperf_runs))
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
