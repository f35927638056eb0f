"""Benchmark: nothing -> validated lab -> nothing, at 2, 4 and 8 hosts (root; not a test).

For each size, alternately, round after round, in the same run on the same machine:
- the script: ``bench/seed_baseline.sh``, the seed's steps as a person would script them
  (ip, etcd, dockerd, the docker CLI; none of this project's code), up to its first ping,
  then its teardown;
- the program: ``__main__.py`` through the engine stand-in, up to a *validated* lab (every
  check of the validator, far more than one ping), then destroy;
- the validator alone, once more on the program's running lab;
- the program's evaluation under mocks (nothing touched).

A failed round is counted and listed with its first failed checks; the medians are of the
rounds that passed. Machines here are noisy: read the ratios, not the absolute seconds.

    sudo venv/bin/python -m bench.bench_lab [--hosts 2 4 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from overlaylab.config import parse  # noqa: E402
from overlaylab.hosts import netns, proc  # noqa: E402
from overlaylab.spec import OUT_VALIDATION_SPEC  # noqa: E402
from overlaylab.validate import validate  # noqa: E402
from tests.labtools import lab_config, leftovers  # noqa: E402
from tests.standin import become_subreaper, destroy, run_program  # noqa: E402

SEGMENT = "192.168.223"  # no test uses it


def bench_config(hosts: int, lab_id: str) -> dict[str, Any]:
    # its own segment and lab id: the benchmark can run beside a local stack or the tests
    return lab_config(hosts=hosts, lab_id=lab_id, segment=SEGMENT)


SCRIPT = PROJECT_DIR / "bench" / "seed_baseline.sh"


def baseline(n: int) -> tuple[float, float, str]:
    """The seed's steps as a plain shell script (``bench/seed_baseline.sh``, none of this
    project's code): (up to its first ping, down, why it failed or "")."""
    t0 = time.monotonic()
    up = subprocess.run(["bash", str(SCRIPT), "up", str(n)], capture_output=True, text=True)
    t1 = time.monotonic()
    down = subprocess.run(["bash", str(SCRIPT), "down", str(n)], capture_output=True, text=True)
    t2 = time.monotonic()
    why = ""
    if up.returncode != 0:
        why = (up.stderr.strip().splitlines() or ["failed"])[-1]
    elif down.returncode != 0:
        why = "down: " + (down.stderr.strip().splitlines() or ["failed"])[-1]
    return t1 - t0, t2 - t1, why


def evaluation(raw: dict[str, Any], times: int = 5) -> float:
    """The program's evaluation under mocks, touching nothing (median seconds)."""
    samples = []
    for _ in range(times):
        t0 = time.monotonic()
        run = run_program(raw, stack="bench", perform=False)
        samples.append(time.monotonic() - t0)
        if run.error is not None:
            raise SystemExit(f"evaluation failed: {run.error}")
    return statistics.median(samples)


def program(raw: dict[str, Any]) -> tuple[float, float, float, float, str]:
    """(up to a validated lab, validator inside up, validator alone, destroy, why it failed)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = run_program(raw, stack="bench", state_file=Path(tmp) / "bench.json")
        why, step, alone = "", 0.0, 0.0
        try:
            if run.error is not None:
                # the first failed checks, where the validator failed `up`
                fails = [x for x in str(run.error).splitlines() if x.startswith("FAIL")][:2]
                why = "; ".join(fails) or str(run.error).splitlines()[0]
            else:
                step = next(r.seconds for r in run.engine.records if r.name == "validate-run")
                t0 = time.monotonic()
                results = validate((run.outputs or {})[OUT_VALIDATION_SPEC], timeout=30)
                alone = time.monotonic() - t0
                bad = [r for r in results if not r.ok]
                if bad:
                    why = f"validator alone: {bad[0].check} {bad[0].subject}"
        finally:
            t1 = time.monotonic()
            errors = destroy(run.engine.state())
            down = time.monotonic() - t1
        if errors:
            why = f"{why} destroy: {errors[0]}".strip()
        return run.seconds, step, alone, down, why


TARGETS = (
    "up <= 0.8x the script at 2 and 8 hosts; down <= 0.8x; validator <= 0.2 s at 2, <= 1.0 s at 8"
)


def _med(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f}" if xs else "-"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hosts", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    netns.preflight()
    become_subreaper()
    proc.set_quiet()  # keep the table readable
    rows = []
    for n in args.hosts:
        raw = bench_config(n, "bench")
        cfg = parse(raw)
        if leftovers(cfg):
            raise SystemExit(f"a previous run left {leftovers(cfg)}")
        s_up: list[float] = []
        s_down: list[float] = []
        p_up: list[float] = []
        p_step: list[float] = []
        p_alone: list[float] = []
        p_down: list[float] = []
        failed: list[str] = []
        for r in range(args.rounds):  # alternately, so drift hits both alike
            up, down, why = baseline(n)
            if why:
                failed.append(f"script round {r + 1}: {why}")
            else:
                s_up.append(up)
                s_down.append(down)
            up, step, alone, down, why = program(raw)
            if why:
                failed.append(f"program round {r + 1}: {why}")
            else:
                p_up.append(up)
                p_step.append(step)
                p_alone.append(alone)
                p_down.append(down)
            if leftovers(cfg):
                raise SystemExit(f"benchmark left {leftovers(cfg)}")
        rows.append((n, s_up, p_up, p_step, p_alone, s_down, p_down, failed, evaluation(raw)))
    print(f"\ntargets: {TARGETS}; evaluation under mocks at 8 hosts <= 1 s")
    print(
        "hosts | script up | program up | ratio | validator in up | validator alone"
        " | script down | program down | ratio | evaluation (mocks) | failed rounds"
    )
    print("---|---|---|---|---|---|---|---|---|---|---")
    for n, s_up, p_up, p_step, p_alone, s_down, p_down, failed, ev in rows:
        up_r = statistics.median(p_up) / statistics.median(s_up) if p_up and s_up else 0
        dn_r = statistics.median(p_down) / statistics.median(s_down) if p_down and s_down else 0
        print(
            f"{n} | {_med(s_up)} s | {_med(p_up)} s | {up_r:.2f} | {_med(p_step)} s"
            f" | {_med(p_alone)} s | {_med(s_down)} s | {_med(p_down)} s | {dn_r:.2f}"
            f" | {ev:.2f} s | {len(failed)}"
        )
    for n, *_, failed, _ev in rows:
        for f in failed:
            print(f"failed at {n} hosts: {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
