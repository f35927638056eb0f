"""conn-disrupt: long-lived TCP connections between test containers, opened before a change to
a running lab and checked after it (after ``cilium connectivity test``'s test of that name).

Each server container runs busybox's persistent echo server (``nc -ll -p PORT -e /bin/cat``);
each client container runs, per server on another host, one connection that sends a numbered
line every 0.2 s and keeps what comes back. A connection that was reset or closed makes its
``nc`` exit, and the loop writes ``nc exited <rc>`` beside it: nothing ever opens it again. So
after the change, a connection is intact when it has no exit line, the lines it got back are
``1..n`` with no gap, and ``n`` still grows: it carried data across the change, both ways.

Everything lives in the containers (``/tmp/overlaylab-conn``): :func:`open_connections`,
:func:`check_connections` and :func:`close_connections` can run in different processes.
Only the lab's own containers and their overlay addresses are used; nothing else is reached.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass
from typing import Any

from overlaylab.errors import LabError
from overlaylab.validate.records import Lab, Result, _r

PORT = 7070
DIR = "/tmp/overlaylab-conn"
CHECK = "conn-disrupt.connection"
#: Every process group open_connections started in a container, killed, then its files; fails
#: (and says which) when a member of a group still runs. Killed members stay zombies until the
#: container's first process reaps them: /proc's state Z, not counted (field 5 is the group).
STOP = (
    f'for f in {DIR}/*.pgid; do [ -e "$f" ] || continue; g=$(cat "$f"); '
    'kill -KILL -"$g" 2>/dev/null; left=""; '
    "for i in 1 2 3 4 5 6 7 8 9 10; do "
    'left=$(awk -v g="$g" \'$5 == g && $3 != "Z" {print $1}\' /proc/[0-9]*/stat 2>/dev/null); '
    '[ -z "$left" ] && break; sleep 0.1; done; '
    'if [ -n "$left" ]; then echo "group $g still runs: $left"; exit 1; fi; done; '
    f"rm -rf {DIR}"
)


@dataclass(frozen=True)
class Pair:
    """A connection from ``client`` to ``server`` (container names), on different hosts."""

    client: str
    server: str

    @property
    def out(self) -> str:
        return f"{DIR}/to-{self.server}.out"

    @property
    def err(self) -> str:
        return f"{DIR}/to-{self.server}.err"


def pairs_across(containers: list[dict[str, Any]], names: set[str] | None = None) -> list[Pair]:
    """Every ordered pair of containers on different hosts (both directions), among ``names``
    when given (the containers that stay through the change)."""
    chosen = [c for c in containers if names is None or c["name"] in names]
    return [Pair(a["name"], b["name"]) for a in chosen for b in chosen if a["host"] != b["host"]]


def _container(lab: Lab, name: str) -> Any:
    host = next(c["host"] for c in lab.containers if c["name"] == name)
    return lab.docker(host).containers.get(name)


def _sh(lab: Lab, name: str, script: str, detach: bool = False) -> str:
    res = _container(lab, name).exec_run(["sh", "-c", script], detach=detach)
    if detach:
        return ""
    out = res.output.decode(errors="replace") if res.output else ""
    if res.exit_code:
        raise LabError(f"{name}: `{script}` exited {res.exit_code}: {out.strip()}")
    return out


def _group(name: str, body: str) -> str:
    """``body`` in a process group of its own (busybox's setsid; the image has no pkill),
    whose id is kept in ``DIR/<name>.pgid`` so that close can stop it whole: the loop, its
    ``nc`` and, for a server, every ``cat`` it started."""
    inner = f"echo $$ > {DIR}/{name}.pgid; {body}"
    return "setsid sh -c " + shlex.quote(inner)


def _address(lab: Lab, name: str) -> str:
    info = lab.container_infos()[name]
    if info.ip is None:
        raise LabError(f"{name} has no address on {lab.network['name']}: {info.error}")
    return info.ip


def open_connections(lab: Lab, pairs: list[Pair], settle: float = 30) -> None:
    """Start the echo servers and one connection per pair; return once every connection has
    had its first lines echoed back (or raise, naming those that did not within ``settle``)."""
    lab.refresh()
    servers = sorted({p.server for p in pairs})
    for s in servers:
        _sh(lab, s, f"mkdir -p {DIR}")
        _sh(lab, s, _group("server", f"exec nc -ll -p {PORT} -e /bin/cat"), detach=True)
    for p in pairs:
        ip = _address(lab, p.server)
        assert ip.startswith("10."), ip  # an overlay address, inside the lab
        loop = f"i=0; while :; do i=$((i+1)); echo $i; sleep 0.2; done | nc {ip} {PORT}"
        _sh(lab, p.client, f"mkdir -p {DIR}")
        _sh(
            lab,
            p.client,
            f'{loop} > {p.out} 2> {p.err}; echo "nc exited $?" >> {p.err}',
            detach=True,
        )
    deadline = time.monotonic() + settle
    waiting = list(pairs)
    while waiting:
        waiting = [p for p in waiting if _state(lab, p)[0] < 3]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise LabError(
                "conn-disrupt: no echo within "
                f"{settle:g} s on {', '.join(f'{p.client} -> {p.server}' for p in waiting)}"
            )
        time.sleep(0.3)


def _state(lab: Lab, p: Pair) -> tuple[int, bool, str]:
    """(lines echoed, numbered 1..n without a gap, the exit line or '')."""
    text = _sh(lab, p.client, f"cat {p.out} 2>/dev/null; echo ---; cat {p.err} 2>/dev/null")
    out, _, err = text.partition("---\n")
    # Only whole lines count: the last one may be cut mid-write ("1" of "15").
    whole = out.split("\n")[:-1]
    numbers = [int(ln) for ln in whole if ln.isdigit()]
    contiguous = numbers == list(range(1, len(numbers) + 1))
    exited = next((ln for ln in err.splitlines() if ln.startswith("nc exited")), "")
    return len(numbers), contiguous, exited


def check_connections(lab: Lab, pairs: list[Pair], window: float = 2.0) -> list[Result]:
    """One record per pair: intact (no exit, no gap) and still carrying data (more lines
    echoed after ``window`` seconds than before)."""
    lab.refresh()
    first = {p: _state(lab, p) for p in pairs}
    time.sleep(window)
    results = []
    for p in pairs:
        n0, _, _ = first[p]
        n1, contiguous, exited = _state(lab, p)
        ip = _address(lab, p.server)
        subject = f"{p.client} -> {p.server} ({ip}:{PORT})"
        if exited:
            actual = f"closed after {n1} lines ({exited}; a reset or a lost path)"
        elif not contiguous:
            actual = f"{n1} lines with a gap (the stream was not one connection)"
        elif n1 <= n0:
            actual = f"stalled: {n0} lines echoed, none more in {window:g} s"
        else:
            actual = f"open, {n1} lines echoed, {n1 - n0} in the last {window:g} s"
        ok = not exited and contiguous and n1 > n0
        results.append(_r(CHECK, subject, "open and delivering, no reset", actual, ok))
    return results


def close_connections(lab: Lab, pairs: list[Pair]) -> list[str]:
    """Stop every loop, client and server and remove their files; returns what could not be
    cleaned (a container that is gone has nothing left to clean)."""
    problems = []
    for name in sorted({p.client for p in pairs} | {p.server for p in pairs}):
        try:
            _sh(lab, name, STOP)
        except Exception as e:  # a container removed by the change: nothing of it remains
            if "No such container" not in str(e) and "404" not in str(e):
                problems.append(f"{name}: {e}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """``python -m overlaylab.validate.conndisrupt open|check|close``: around a change of a
    running stack, by hand (the spec from the stack, its outputs or a file, as the validator
    takes it)."""
    import argparse

    from overlaylab.validate.cli import checked_spec

    p = argparse.ArgumentParser(
        prog="python -m overlaylab.validate.conndisrupt",
        description="Long-lived TCP connections between the test containers across hosts: "
        "open them before a change, check after it that none was reset, close them.",
    )
    p.add_argument("action", choices=("open", "check", "close"))
    src = p.add_mutually_exclusive_group()
    src.add_argument("--stack", default="local", help="the spec from stacks/Pulumi.STACK.yaml")
    src.add_argument("--outputs", help="a file of `pulumi stack output --json`")
    src.add_argument("--spec", help="a file holding the validation spec")
    p.add_argument("--containers", help="comma-separated: only these (the ones that stay)")
    args = p.parse_args(argv)
    args.spec_json = None
    spec = checked_spec(args)
    if spec is None:
        return 2
    names = set(args.containers.split(",")) if args.containers else None
    pairs = pairs_across(spec["containers"], names)
    if not pairs:
        print("error: no two of these containers are on different hosts", file=sys.stderr)
        return 2
    lab = Lab(spec)
    try:
        lab.connect_all()
        if args.action == "open":
            open_connections(lab, pairs)
            print(f"{len(pairs)} connections open (port {PORT}); after the change: check")
            return 0
        if args.action == "close":
            left = close_connections(lab, pairs)
            for line in left:
                print(f"error: {line}", file=sys.stderr)
            return 1 if left else 0
        results = check_connections(lab, pairs)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        lab.close()
    for r in results:
        print(r.line())
    failed = sum(not r.ok for r in results)
    print(f"{len(results)} connections, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
