"""Soak: the same lab up, validated and down, many times in a row; a failed round is kept.

    sudo venv/bin/python -m bench.soak --hosts 8 --cycles 50
    sudo venv/bin/python -m bench.soak --hosts 8 --cycles 20 --busy 2     # cores kept busy
    sudo venv/bin/python -m bench.soak --hosts 2 --restarts 100           # stop/start test2

Each cycle brings an N-host local lab up through the engine stand-in (the validator runs last
in `up`), takes it down, and checks that nothing is left. On a failed cycle it writes the
lab's capture (``overlaylab.labdump``: every host's overlay sandbox, serf members, endpoint keys)
before teardown, prints where, and stops. ``--restarts`` instead keeps one lab up and stops
and starts one container that many times, requiring every by-name ping to pass each time.
Not part of CI: a loop of lab runs, bounded by its counts, only to the lab's own addresses.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

import standin
from overlaylab import spec as out
from overlaylab.config import parse
from overlaylab.config.sample import lab_config
from overlaylab.labdump import dump
from overlaylab.leftovers import leftovers
from overlaylab.netrule import RouteGuard
from overlaylab.validate import summary, validate

SEGMENT = "192.168.222"  # no test uses it: a soak may run beside them


def _busy() -> None:
    while True:
        pass


def cycle(n: int, cfg: dict[str, Any], state: Path, keep: Path) -> tuple[bool, str]:
    guard = RouteGuard(cfg["lab"]["bridge"])
    start = time.monotonic()
    run = standin.run_program(cfg, stack="soak", state_file=state, guard=guard)
    up = time.monotonic() - start
    ok, why = run.error is None, "" if run.error is None else str(run.error).splitlines()[0]
    if not ok:
        lab = parse(cfg, "soak config")
        logs = []
        for h in lab.hosts:
            for name in ("etcd.log", "docker.log"):
                f = Path(lab.host_dir(h)) / name
                tail = f.read_text(errors="replace").splitlines()[-40:] if f.exists() else []
                logs.append(f"--- {h.name} {name}\n" + "\n".join(tail))
        keep.write_text(dump(lab) + "\n\n" + "\n".join(logs))
        why += f" (capture in {keep})"
    errors = run.destroy()
    left = leftovers(parse(cfg, "soak config"))
    if errors or left:
        ok, why = False, f"{why} teardown: {errors} left: {left}"
    print(f"cycle {n}: {'ok  ' if ok else 'FAIL'} up {up:.1f}s {why}", flush=True)
    return ok, why


def restarts(cfg: dict[str, Any], count: int, state: Path) -> int:
    import docker

    guard = RouteGuard(cfg["lab"]["bridge"])
    run = standin.run_program(cfg, stack="soak", state_file=state, guard=guard)
    failed = 0
    try:
        if run.error is not None:
            print(f"up failed: {run.error}")
            return 1
        spec = (run.outputs or {})[out.OUT_VALIDATION_SPEC]
        lab = parse(cfg, "soak config")
        host = lab.host("docker-node2")
        client = docker.DockerClient(base_url=f"unix://{lab.host_dir(host)}/docker.sock")
        for i in range(1, count + 1):
            c = client.containers.get("test2")
            c.stop(timeout=1)
            c.start()
            results = validate(spec, timeout=30)
            bad = [r for r in results if not r.ok]
            by_name = [r for r in results if r.check == "overlay.ping" and "by name" in r.subject]
            print(f"restart {i}: {len(by_name)} by-name pings, {len(bad)} failed", flush=True)
            if bad:
                failed += 1
                print(summary(results, 0))
                break
    finally:
        run.destroy()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--hosts", type=int, default=8)
    p.add_argument("--cycles", type=int, default=50)
    p.add_argument("--busy", type=int, default=0, help="busy-loop processes beside the runs")
    p.add_argument("--restarts", type=int, default=0, help="stop/start cycles instead")
    p.add_argument("--keep", type=Path, default=Path("/tmp/soak-failure.txt"))
    args = p.parse_args(argv)
    standin.become_subreaper()
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
            return restarts(cfg, args.restarts, state)
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
