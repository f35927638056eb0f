"""Interruptions: `up` and `destroy` killed at random moments, then run again to the end.

    sudo venv/bin/python -m bench.interrupts --kills 30          # 30 of each verb, long form
    sudo venv/bin/python -m bench.interrupts --kills 5 --seed 1  # the short form CI runs

Each round starts the stand-in's CLI (`python -m standin up` or `destroy`) on a 2-host local
lab of its own (segment 192.168.224.0/24, no test uses it), sends it SIGINT or SIGKILL after a
random delay within the verb's measured length, then runs the same verb again to the end:
- after an `up` killed, the next `up` must reach a validated lab;
- after a `destroy` killed, the next `destroy` must leave nothing (processes, namespaces,
  links, mounts, the lab's directories, the stack's state).
Pending creates an interrupted run left are resolved before the next run, as the engine's
warning says (pulumi `up` only warns about them): a container Docker made anyway is imported
(`refresh --import-pending-creates URN ID`), every other pending create cleared
(`--clear-pending-creates`; the verbs adopt what runs). A
SIGINT must end the run with one line and no traceback (the steps in flight finish). The
first round that does not converge stops the loop and keeps its output. Bounded by its
counts and timeouts; traffic only to the lab's own addresses (the stand-in checks routes).
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import forget_kept
from overlaylab.config import parse
from overlaylab.config.sample import lab_config
from overlaylab.leftovers import leftovers
from overlaylab.stackconfig import write_stack_file

PROJECT = Path(__file__).resolve().parents[1]
#: An `up` killed (SIGKILL) between Docker's creating a container and the engine's recording
#: it leaves a pending create of a container that exists: cleared, the next `up` would create
#: it again and Docker would refuse the name ("is already in use"). The engine's remedy, used
#: here: `refresh --import-pending-creates URN ID` with the container's id.
KNOWN = "a container create killed in flight, resolved by importing its pending create"
STACK = "intr"
SEGMENT = "192.168.224"
RUN_TIMEOUT = 300


@dataclass
class Tally:
    rounds: list[str] = field(default_factory=list)

    def add(self, verb: str, sig: str, at: float, note: str) -> None:
        self.rounds.append(f"{verb:<8} {sig:<8} at {at:5.1f}s  {note}")


class Lab:
    def __init__(self, work: Path) -> None:
        self.cfg: dict[str, Any] = lab_config(2, lab_id=STACK, segment=SEGMENT)
        self.config_file = write_stack_file(work / f"Pulumi.{STACK}.yaml", self.cfg)
        self.state_dir = work / "state"
        self.state_file = self.state_dir / f"{STACK}.json"

    def argv(self, verb: str) -> list[str]:
        return [
            *(sys.executable, "-m", "standin", verb, "--stack", STACK),
            *("--config-file", str(self.config_file), "--state-dir", str(self.state_dir)),
        ]

    def run(self, verb: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.argv(verb), *extra], capture_output=True, text=True, cwd=PROJECT,
            timeout=RUN_TIMEOUT, check=False,
        )  # fmt: skip

    def pending_creates(self) -> bool:
        from standin import state

        return any(o.type == state.CREATING for o in state.load_pending(self.state_file))

    def created_anyway(self) -> list[str]:
        """``--import-pending-creates URN ID`` for each pending create of a container that
        Docker made before the run died (found by its name on its host's daemon)."""
        from overlaylab.hosts.dockerd import docker_api
        from standin import state
        from standin.diff import CONTAINER

        cfg = parse(self.cfg, "interrupts config")
        out: list[str] = []
        for o in state.load_pending(self.state_file):
            name = o.resource.inputs.get("name")
            if o.type != state.CREATING or o.resource.type != CONTAINER or not name:
                continue
            host = cfg.host(next(c.host for c in cfg.containers if c.name == name))
            try:
                got = docker_api(cfg.docker_socket(host), timeout=10).inspect_container(name)
            except Exception:
                continue  # not made: the pending create is cleared
            out += ["--import-pending-creates", o.resource.urn, str(got["Id"])]
        return out

    def interrupted(self, verb: str, delay: float, sig: signal.Signals) -> tuple[int, str]:
        proc = subprocess.Popen(
            self.argv(verb), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=PROJECT, start_new_session=True,
        )  # fmt: skip
        try:
            out, err = proc.communicate(timeout=delay)
            return proc.returncode, "finished before the signal\n" + err
        except subprocess.TimeoutExpired:
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
        return proc.returncode, out + err

    def left(self) -> list[str]:
        """What is left, once this process's reaper had up to 2 s: a run killed by SIGKILL
        leaves its adopted daemons to this process (the next subreaper up), so the member the
        next destroy kills is this process's zombie until its reaper's next round."""
        deadline = time.monotonic() + 2.0
        while True:
            found = leftovers(parse(self.cfg, "interrupts config"))
            if self.state_file.exists():
                found.append(f"state {self.state_file}")
            if not found or time.monotonic() >= deadline:
                return found
            time.sleep(0.1)


def _sigint_ok(rc: int, text: str) -> str:
    """A SIGINT ends the run with one line and no traceback ('' when it did)."""
    if "finished before the signal" in text:
        return ""
    if "Traceback" in text:
        return "a traceback after SIGINT:\n" + text[-3000:]
    if "interrupted" not in text:
        return "no 'interrupted' line after SIGINT:\n" + text[-3000:]
    return ""


def measure(lab: Lab) -> tuple[float, float]:
    start = time.monotonic()
    res = lab.run("up")
    up = time.monotonic() - start
    if res.returncode != 0:
        raise SystemExit(f"the first up failed:\n{res.stdout[-3000:]}{res.stderr[-3000:]}")
    start = time.monotonic()
    res = lab.run("destroy")
    down = time.monotonic() - start
    if res.returncode != 0 or lab.left():
        raise SystemExit(f"the first destroy failed: {lab.left()}\n{res.stderr[-3000:]}")
    return up, down


def loop(kills: int, seed: int, work: Path, kill_up: bool = True) -> tuple[Tally, str]:
    """``kill_up=False``: `up` only gets SIGINT (see KNOWN)."""
    rng = random.Random(seed)
    lab = Lab(work)
    up_s, down_s = measure(lab)
    tally = Tally()
    print(f"measured: up {up_s:.1f}s, destroy {down_s:.1f}s", flush=True)
    for i in range(kills):
        for verb, length in (("up", up_s), ("destroy", down_s)):
            if verb == "destroy":  # a lab to destroy: up to the end first
                res = lab.run("up")
                if res.returncode != 0:
                    return tally, f"round {i}: up before the destroy failed:\n{res.stderr[-3000:]}"
            kill = rng.random() >= 0.5 and (kill_up or verb == "destroy")
            sig = signal.SIGKILL if kill else signal.SIGINT
            at = rng.uniform(0.2, length)
            rc, text = lab.interrupted(verb, at, sig)
            if sig == signal.SIGINT and (why := _sigint_ok(rc, text)):
                return tally, f"round {i} {verb}: {why}"
            cleared = ""
            if lab.pending_creates():  # as the engine's warning says: refresh resolves them
                imports = lab.created_anyway()
                ref = lab.run("refresh", *imports, "--clear-pending-creates")
                if ref.returncode != 0:
                    return (
                        tally,
                        f"round {i}: refresh after {sig.name} failed:\n{ref.stderr[-3000:]}",
                    )
                cleared = ", pending creates " + (
                    f"resolved ({len(imports) // 3} imported)" if imports else "cleared"
                )
            res = lab.run(verb)
            if res.returncode != 0:
                return tally, (f"round {i}: {verb} after {sig.name} at {at:.1f}s did not "
                               f"converge:\n{res.stdout[-3000:]}{res.stderr[-3000:]}")  # fmt: skip
            if verb == "up" and " 0 failed" not in res.stdout:
                return tally, f"round {i}: up converged without a validation:\n{res.stdout[-2000:]}"
            if verb == "destroy" and (left := lab.left()):
                return tally, f"round {i}: destroy after {sig.name} at {at:.1f}s left {left}"
            tally.add(verb, sig.name, at, f"converged{cleared}")
            print(tally.rounds[-1], flush=True)
    res = lab.run("destroy")
    if res.returncode != 0 or lab.left():
        return tally, f"the last destroy left {lab.left()}: {res.stderr[-2000:]}"
    return tally, ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.interrupts", description=__doc__.split("\n")[0]
    )
    p.add_argument("--kills", type=int, default=30, help="interruptions of each verb")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--no-kill-up", action="store_true", help=f"SIGINT only for up ({KNOWN})")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    with tempfile.TemporaryDirectory(prefix="interrupts-") as work:
        try:
            tally, failure = loop(args.kills, seed, Path(work), kill_up=not args.no_kill_up)
            ups = sum(r.startswith("up") for r in tally.rounds)
            downs = len(tally.rounds) - ups
            print(f"seed {seed}: {ups} up and {downs} destroy interruptions converged")
            if failure:
                print(f"FAILED: {failure}", file=sys.stderr)
                Lab(Path(work)).run("destroy")
                return 1
        finally:
            forget_kept(Lab(Path(work)).cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
