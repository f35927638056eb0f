"""Soak: the same lab up, validated and down, many times in a row; a failed round is kept.

    sudo venv/bin/python -m bench.soak --hosts 8 --cycles 50
    sudo venv/bin/python -m bench.soak --hosts 8 --cycles 20 --busy 2     # cores kept busy
    sudo venv/bin/python -m bench.soak --hosts 2 --restarts 100 --busy 2  # docker restart test2

Each cycle brings an N-host local lab up through the engine stand-in (the validator runs last
in `up`), takes it down, and checks that nothing is left. On a failed cycle it writes the
lab's capture (``overlaylab.labdump``: every host's overlay sandbox, serf members, endpoint keys)
before teardown, prints where, and stops. ``--restarts`` instead keeps one lab up and stops
and restarts test2 that many times as a user does (Docker's CLI, then the validator's own
command), counting the runs that fail and the names keeper's mends.
Not part of CI: a loop of lab runs, bounded by its counts, only to the lab's own addresses.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import standin
from bench import stoppable
from overlaylab import spec as out
from overlaylab.config import parse
from overlaylab.config.sample import lab_config
from overlaylab.labdump import dump
from overlaylab.leftovers import leftovers
from overlaylab.netrule import RouteGuard

SEGMENT = "192.168.222"  # no test uses it: a soak may run beside them


def _busy() -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # terminate() ends it, no traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the soak's own ^C is the soak's
    while True:
        pass


def capture(cfg: dict[str, Any], keep: Path, lines: int = 40) -> None:
    """The lab's dump and the tail of every host's logs, written to ``keep`` before teardown;
    beside it (``<keep>.d/``) every host's whole logs and its containers' `docker inspect`."""
    lab = parse(cfg, "soak config")
    whole = keep.with_name(keep.name + ".d")
    shutil.rmtree(whole, ignore_errors=True)
    whole.mkdir(parents=True)
    logs = []
    for h in lab.hosts:
        base = Path(lab.host_dir(h))
        for name in ("etcd.log", "docker.log", "keeper.log"):
            f = base / name
            text = f.read_text(errors="replace") if f.exists() else ""
            (whole / f"{h.name}-{name}").write_text(text)
            logs.append(f"--- {h.name} {name}\n" + "\n".join(text.splitlines()[-lines:]))
        docker = ["docker", "-H", f"unix://{base / 'docker.sock'}"]
        ids = subprocess.run([*docker, "ps", "-aq"], capture_output=True, text=True, check=False)
        if ids.stdout.split():
            got = subprocess.run([*docker, "inspect", *ids.stdout.split()], capture_output=True,
                                 text=True, check=False)  # fmt: skip
            (whole / f"{h.name}-inspect.json").write_text(got.stdout + got.stderr)
    keep.write_text(dump(lab) + "\n\n" + "\n".join(logs) + f"\n\nwhole logs in {whole}\n")


_TERM = re.compile(r"elected leader \S+ at term (\d+)")
_NUDGES = re.compile(r"door open, nudges (\d+)")


def elections(cfg: dict[str, Any]) -> int:
    """Leader elections the members saw after the first one (raft terms above the lowest any
    member was elected in): 0 for a cluster whose first leader kept its place; more is the
    leader flapping that too short an election timeout on a busy machine would cause."""
    lab = parse(cfg, "soak config")
    terms: set[int] = set()
    for h in lab.hosts:
        f = Path(lab.host_dir(h)) / "etcd.log"
        if f.exists():
            terms.update(int(t) for t in _TERM.findall(f.read_text(errors="replace")))
    return len(terms) - 1 if terms else 0


def nudges(run: Any) -> int:
    """Re-announcements of the first host's key the daemons' doors took (their creates' output)."""
    total = 0
    for r in run.records:
        if r.name.endswith("-dockerd"):
            said = str(r.outputs.get("stdout", "")) + str(r.outputs.get("stderr", ""))
            total += sum(int(x) for x in _NUDGES.findall(said))
    return total


#: An up slower than this prints its slowest steps and their last lines (the evidence of a
#: slow path that still passed).
SLOW_UP = 30.0


def slowest(run: Any, count: int = 5) -> str:
    lines = []
    for r in sorted(run.records, key=lambda r: -r.seconds)[:count]:
        said = (str(r.outputs.get("stdout", "")) + str(r.outputs.get("stderr", ""))).splitlines()
        lines.append(f"  slow: {r.name} {r.seconds:.1f}s: " + " | ".join(said[-4:]))
    return "\n".join(lines)


def cycle(n: int, cfg: dict[str, Any], state: Path, keep: Path) -> tuple[bool, str]:
    guard = RouteGuard(cfg["lab"]["bridge"])
    start = time.monotonic()
    run = standin.run_program(cfg, stack="soak", state_file=state, guard=guard)
    up = time.monotonic() - start
    ok, why = run.error is None, "" if run.error is None else str(run.error).splitlines()[0]
    extra = f"elections after the first {elections(cfg)}, door nudges {nudges(run)}"
    if up > SLOW_UP:
        slow = keep.with_name(f"{keep.stem}-slow-{n}{keep.suffix}")
        capture(cfg, slow, lines=200)
        extra += f" (slow: capture in {slow})\n" + slowest(run)
    if not ok:
        capture(cfg, keep)
        why += f" (capture in {keep})"
    errors = run.destroy()
    left = leftovers(parse(cfg, "soak config"))
    if errors or left:
        ok, why = False, f"{why} teardown: {errors} left: {left}"
    print(f"cycle {n}: {'ok  ' if ok else 'FAIL'} up {up:.1f}s {extra} {why}", flush=True)
    return ok, why


def restarts(cfg: dict[str, Any], count: int, state: Path, busy: int, keep: Path) -> int:
    """Restart test2 as a user does: `docker restart` with Docker's CLI, then the validator's
    own command, ``count`` times. Every run is counted (a failure does not stop the loop; the
    first one's report and capture are kept), and so are the names keeper's mends."""
    guard = RouteGuard(cfg["lab"]["bridge"])
    run = standin.run_program(cfg, stack="soak", state_file=state, guard=guard)
    failed: list[int] = []
    try:
        if run.error is not None:
            capture(cfg, keep, lines=400)
            print(f"up failed: {run.error} (capture in {keep})")
            return 1
        spec = json.dumps((run.outputs or {})[out.OUT_VALIDATION_SPEC])
        lab = parse(cfg, "soak config")
        base = Path(lab.host_dir(lab.host("docker-node2")))
        docker = ["docker", "-H", f"unix://{base / 'docker.sock'}"]
        validator = [sys.executable, "-m", "overlaylab.validate", "--spec-json", spec]
        for i in range(1, count + 1):
            res = subprocess.run([*docker, "restart", "-t", "1", "test2"], capture_output=True,
                                 text=True, check=False)  # fmt: skip
            check = subprocess.run(validator, capture_output=True, text=True, check=False)
            last = check.stdout.strip().splitlines()[-1:] or ["(no report)"]
            print(f"restart {i}: docker restart rc {res.returncode}, validator rc "
                  f"{check.returncode}: {last[0]}", flush=True)  # fmt: skip
            if res.returncode or check.returncode:
                failed.append(i)
                if len(failed) == 1:
                    print(res.stderr + check.stdout + check.stderr)
                    capture(cfg, keep, lines=400)
        keeper_log = base / "keeper.log"
        mends = (
            keeper_log.read_text().count("an endpoint change (1 of") if keeper_log.exists() else 0
        )
    finally:
        run.destroy()
    print(json.dumps({"restarts": count, "failed": len(failed), "failed_runs": failed,
                      "keeper_mends": mends, "busy": busy}))  # fmt: skip
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--hosts", type=int, default=8)
    p.add_argument("--cycles", type=int, default=50)
    p.add_argument("--busy", type=int, default=0, help="busy-loop processes beside the runs")
    p.add_argument(
        "--restarts", type=int, default=0, help="docker restart test2, then validate, N times"
    )
    p.add_argument("--keep", type=Path, default=Path("/tmp/soak-failure.txt"))
    args = p.parse_args(argv)
    standin.become_subreaper()
    stoppable()
    cfg = lab_config(args.hosts, lab_id="soak", segment=SEGMENT)
    if leftovers(parse(cfg, "soak config")):
        print(f"the soak lab is up: {leftovers(parse(cfg, 'soak config'))[:3]}", file=sys.stderr)
        return 2
    busy = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(args.busy)]
    for b in busy:
        b.start()
    state = Path("/tmp/soak-state.json")
    try:
        if args.restarts:
            return restarts(cfg, args.restarts, state, args.busy, args.keep)
        results = []
        for i in range(1, args.cycles + 1):
            results.append(cycle(i, cfg, state, args.keep))
            if not results[-1][0]:
                break  # the capture is kept; the next cycle would overwrite the evidence
        failed = [r for r in results if not r[0]]
        print(json.dumps({"hosts": args.hosts, "cycles": len(results), "failed": len(failed),
                          "busy": args.busy}))  # fmt: skip
        return 1 if failed else 0
    finally:
        for b in busy:
            b.terminate()


if __name__ == "__main__":
    sys.exit(main())
