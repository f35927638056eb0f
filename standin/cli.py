"""The stand-in's command line: test tooling, not a deployment tool.

python -m standin up --stack local     # like `pulumi up` on the local stack
python -m standin down --stack local   # like `pulumi destroy`
python -m standin preview --stack local
python -m standin refresh --stack local  # like `pulumi refresh`; `up --refresh`, `--target`,
                                         # `--target-dependents`, `--replace` as `pulumi up`
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from overlaylab.netrule import RouteGuard
from overlaylab.stackconfig import raw_from_file
from standin import state
from standin.commands import KEYS, SECRETS
from standin.executor import destroy
from standin.plan import Step, render, summary, timeline
from standin.program import Run, run_program
from standin.reaper import become_subreaper
from standin.refresh import refresh
from standin.state import DEFAULT_STATE_DIR

DESCRIPTION = (
    "A test-only stand-in for the Pulumi engine: runs the real program and performs it for real."
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m standin", description=DESCRIPTION)
    p.add_argument("action", choices=["up", "down", "preview", "refresh"])
    p.add_argument("--stack", default="local")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    p.add_argument("--ssh-key", type=Path, help="private key of an ssh stack (its sshPrivateKey)")
    p.add_argument("--diff", action="store_true", help="show each changed input: old => new")
    # pulumi v3.259.0 pkg/cmd/pulumi/operations/up.go:799-861
    p.add_argument("--refresh", action="store_true", help="refresh the state before the update")
    p.add_argument("--target", "-t", action="append", default=[], metavar="URN",
                   help="update only this resource (repeatable)")  # fmt: skip
    p.add_argument("--target-dependents", action="store_true",
                   help="with --target: also the resources that depend on a target")  # fmt: skip
    p.add_argument("--replace", action="append", default=[], metavar="URN",
                   help="replace this resource whatever its diff (repeatable)")  # fmt: skip
    p.add_argument("--target-replace", action="append", default=[], metavar="URN",
                   help="shorthand for --target URN --replace URN")  # fmt: skip
    p.add_argument(
        "--timeline",
        action="store_true",
        help="after up or down: when each resource started and ended",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    raw = raw_from_file(args.stack)
    bridge = (raw.get("lab") or {}).get("bridge")
    guard = RouteGuard(bridge) if bridge else None
    secrets = {"sshPrivateKey": args.ssh_key.read_text()} if args.ssh_key else {}
    for v in secrets.values():
        KEYS.add(v)
        SECRETS.remember(v)  # a delete's secret environment (the identity's key)
    state_file = args.state_dir / f"{args.stack}.json"
    become_subreaper()
    if args.action == "down":
        return _down(args.stack, state_file, guard, args.timeline)
    old = state.load(state_file)
    pending = state.load_pending(state_file)
    if args.action == "refresh" or (args.refresh and args.action == "up"):
        old = _refresh(args.stack, state_file, old, guard)
        if args.action == "refresh":
            return 0
    preview = args.action == "preview"
    if pending and not preview:
        print(state.pending_warning(pending), file=sys.stderr)
    print(f"{'Previewing' if preview else 'Updating'} stack {args.stack}"
          f"{' (new)' if not old else f' ({len(old)} resources in its state)'}")  # fmt: skip

    def show(step: Step) -> None:
        for line in render([step], show_diff=args.diff):
            print(
                line + ("" if preview or line.startswith("      ") else f" ({step.seconds:.1f}s)")
            )

    run = run_program(
        raw, args.stack, preview, state_file, guard=guard, secrets=secrets, old=old,
        on_step=None if preview else show, pending=pending,
        targets=[*args.target, *args.target_replace] or None,
        target_dependents=args.target_dependents,
        replaces=[*args.replace, *args.target_replace],
    )  # fmt: skip
    if preview:
        for line in render(run.steps, show_diff=args.diff):
            print(line)
    print(f"Resources: {summary(run.steps)}")
    if args.timeline and not preview:
        _print_timeline(run.steps)
    return _report(args.stack, run)


def _down(stack: str, state_file: Path, guard: RouteGuard | None, show_timeline: bool) -> int:
    records = state.load(state_file)
    pending = state.load_pending(state_file)
    if pending:
        print(state.pending_warning(pending), file=sys.stderr)
    steps: list[Step] = []
    errors = destroy(records, guard=guard, steps=steps, state_file=state_file, pending=pending)
    if show_timeline:
        _print_timeline(steps)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if errors:
        left = state.load(state_file)
        print(
            f"destroy failed: {len(left)} resources not deleted are kept in {state_file}; "
            "fix and run `down` again",
            file=sys.stderr,
        )
        return 1
    print(f"destroyed {sum(r.custom for r in records)} resources of stack {stack}")
    if any(o.type == state.CREATING for o in pending):
        print(f"{state_file} keeps the pending creates of an interrupted run", file=sys.stderr)
    else:
        state.forget(state_file)
    return 0


def _refresh(stack: str, state_file: Path, old: list[state.Record], guard: RouteGuard | None
             ) -> list[state.Record]:  # fmt: skip
    """Each resource's Read; the state file then holds what they answered."""
    done = refresh(old, guard)
    for name in done.changed:
        print(f"~  refreshed {name}")
    for name in done.gone:
        print(f"-  {name} is gone: it leaves the state")
    if old:
        state.save(state_file, done.records)
    print(f"Refreshed stack {stack}: {len(done.changed)} changed, {len(done.gone)} gone")
    return done.records


def _print_timeline(steps: list[Step]) -> None:
    print("\n  start     end   took  step     type           resource")
    for line in timeline(steps):
        print(line)


def _report(stack: str, run: Run) -> int:
    """What `up` or `preview` did, the stack's outputs and the validator's report."""
    preview = run.engine.preview
    if run.error is not None:
        print(f"error: {run.error}", file=sys.stderr)
        print(
            f"{'preview' if preview else 'up'} failed after {run.seconds:.1f}s; the state "
            f"keeps what exists: fix and run `up` again, or `python -m standin down "
            f"--stack {stack}` to remove it",
            file=sys.stderr,
        )
        return 1
    outputs = dict(run.outputs or {})
    report = outputs.pop("validationReport", None)
    print(json.dumps(outputs, indent=2, default=str))
    if isinstance(report, str):
        print(f"\nvalidation report:\n{report}")
    print(f"{'preview' if preview else 'up'} done in {run.seconds:.1f}s")
    return 0
