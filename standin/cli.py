"""The stand-in's command line: the Pulumi CLI's verbs, where the CLI cannot be installed.

python -m standin up --stack local        # `pulumi up`: the stack as configured, for real
python -m standin preview --stack local   # `pulumi preview` (--diff: each changed input)
python -m standin destroy --stack local   # `pulumi destroy` (`down` is its alias)
python -m standin refresh --stack local   # `pulumi refresh`; `up --refresh`, `--target`,
                                          # `--target-dependents`, `--replace` as `pulumi up`
python -m standin stack output [NAME] [--json] --stack local   # `pulumi stack output`
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from overlaylab.config import parse
from overlaylab.errors import ConfigError
from overlaylab.netrule import RouteGuard
from overlaylab.stackconfig import raw_from_file
from overlaylab.validate.cli import RECORDS_ENV
from standin import interrupt, state
from standin.commands import KEYS, SECRETS
from standin.executor import destroy
from standin.plan import Step, render, summary, timeline
from standin.program import Run, run_program
from standin.reaper import become_subreaper
from standin.refresh import refresh
from standin.state import DEFAULT_STATE_DIR

DESCRIPTION = (
    "The engine stand-in: runs the project's Pulumi program and performs it for real, with the "
    "Pulumi CLI's verbs (docs/standin.md)."
)
VERBS = ("up", "preview", "destroy", "down", "refresh", "stack")
#: Verbs that change the machine: the local transport's namespaces, bridge and daemons, and the
#: state under /var/lib/overlaylab, need root.
CHANGING = ("up", "destroy", "down", "refresh")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m standin", description=DESCRIPTION)
    p.add_argument("action", choices=VERBS)
    p.add_argument("rest", nargs="*", help="for `stack`: output [NAME]")
    p.add_argument("--stack", "-s", default="local")
    p.add_argument("--config-file", type=Path, help="the stack's config file, in place of "
                   "stacks/Pulumi.STACK.yaml (as `pulumi --config-file`)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="`stack output`: as JSON")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    p.add_argument("--ssh-key", type=Path, help="private key of an ssh stack (its sshPrivateKey)")
    p.add_argument("--diff", action="store_true", help="show each changed input: old => new")
    # pulumi v3.259.0 pkg/cmd/pulumi/operations/up.go:799-861
    p.add_argument("--refresh", action="store_true", help="refresh the state before the update")
    # pulumi v3.259.0 pkg/cmd/pulumi/operations/refresh.go:318-328, 485-487
    p.add_argument("--clear-pending-creates", action="store_true",
                   help="refresh: drop the pending creates an interrupted run left")  # fmt: skip
    # refresh.go:488-489 (the flag), 564-590 (its URN ID pairs), 631-634 ("the CREATE
    # succeeded; provide a resource ID and complete the CREATE operation")
    p.add_argument("--import-pending-creates", nargs=2, action="append", default=[],
                   metavar=("URN", "ID"), help="refresh: a pending create that succeeded, "
                   "completed with the id it got (repeatable)")  # fmt: skip
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
    # Each step's line as it ends, piped (tee, a CI log) or not.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    args = _parser().parse_args(argv)
    state_file = args.state_dir / f"{args.stack}.json"
    if args.action == "stack":
        return _stack_output(args.rest, state_file, args.json)
    checked = _checked(args)
    if isinstance(checked, str):
        print(f"error: {checked}", file=sys.stderr)
        return 2
    raw, secrets = checked
    interrupt.install()
    bridge = (raw.get("lab") or {}).get("bridge")
    guard = RouteGuard(bridge) if bridge else None
    for v in secrets.values():
        KEYS.add(v)
        SECRETS.remember(v)  # a delete's secret environment (the identity's key)
    become_subreaper()
    if args.action in ("down", "destroy"):
        return _down(args.stack, state_file, guard, args.timeline)
    old = state.load(state_file)
    pending = state.load_pending(state_file)
    if args.action == "refresh" or (args.refresh and args.action == "up"):
        if args.action == "refresh" and args.import_pending_creates:
            old, pending = _import_pending_creates(old, pending, args.import_pending_creates)
        if args.action == "refresh" and args.clear_pending_creates:
            pending = _clear_pending_creates(pending)
        old = _refresh(args.stack, state_file, old, guard, pending)
        if args.action == "refresh":
            return 0
    return _update(args, raw, secrets, state_file, guard, old, pending)


def _checked(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]] | str:
    """The stack's raw config and secrets, or what is wrong, in one line: checked before
    anything runs, so that bad input changes nothing (the program checks it too)."""
    try:
        raw = raw_from_file(args.stack, args.config_file)
        secrets = {"sshPrivateKey": args.ssh_key.read_text()} if args.ssh_key else {}
        shown = args.config_file or f"stacks/Pulumi.{args.stack}.yaml"
        parse({**raw, **secrets}, str(shown))
    except (ConfigError, OSError) as e:
        return str(e)
    transport = (raw.get("lab") or {}).get("transport", "local")
    if args.action in CHANGING and transport == "local" and os.geteuid() != 0:
        return (
            f"`{args.action}` of a local stack makes namespaces, a bridge and daemons on this "
            f"machine: run it as root (sudo venv/bin/python -m standin {args.action} "
            f"--stack {args.stack})"
        )
    if args.action in CHANGING and not _writable(args.state_dir):
        return (
            f"cannot write the stack's state in {args.state_dir}: run as root, or give "
            "--state-dir a directory of yours"
        )
    return raw, secrets


def _import_pending_creates(
    old: list[state.Record], pending: list[state.Operation], pairs: list[list[str]]
) -> tuple[list[state.Record], list[state.Operation]]:
    """refresh --import-pending-creates URN ID (pulumi refresh.go:564-590): each such pending
    create is completed with that id, as the CLI's own words say ("the CREATE succeeded;
    provide a resource ID and complete the CREATE operation", refresh.go:631-634): the
    resource enters the state with the inputs it was being created with, and the refresh that
    follows reads it from its provider. (Where v3.259.0 consumes the re-typed operation was
    not found in its source; this models the flag's documented contract.) An URN that names
    no pending create is a warning, as there (refresh.go:289-302)."""
    ids = dict(pairs)
    kept: list[state.Operation] = []
    for o in pending:
        rid = ids.pop(o.resource.urn, None) if o.type == state.CREATING else None
        if rid is None:
            kept.append(o)
            continue
        r = o.resource
        r.id, r.outputs = rid, {**r.inputs}
        r.state = {**r.state, "id": rid}
        old = [*old, r]
        print(f"+  pending create of {r.name} completed with id {rid}")
    for urn in ids:
        print(f"warning: {urn} did not correspond to a pending create", file=sys.stderr)
    return old, kept


def _clear_pending_creates(pending: list[state.Operation]) -> list[state.Operation]:
    """refresh --clear-pending-creates (pulumi refresh.go:318-328): dropped from the state."""
    for o in pending:
        if o.type == state.CREATING:
            print(f"-  pending create of {o.resource.name} cleared from the state")
    return [o for o in pending if o.type != state.CREATING]


def _update(
    args: argparse.Namespace,
    raw: dict[str, Any],
    secrets: dict[str, str],
    state_file: Path,
    guard: RouteGuard | None,
    old: list[state.Record],
    pending: list[state.Operation],
) -> int:
    """`up` or `preview`: the plan or its steps as they end, the summary, the report."""
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

    started = time.time()
    before = os.environ.get(RECORDS_ENV)
    if not preview:  # the validator's records, for the page drawn at the end
        os.environ[RECORDS_ENV] = str(state.records_file(state_file))
    try:
        run = run_program(
            raw, args.stack, preview, state_file, guard=guard, secrets=secrets, old=old,
            on_step=None if preview else show, pending=pending,
            targets=[*args.target, *args.target_replace] or None,
            target_dependents=args.target_dependents,
            replaces=[*args.replace, *args.target_replace],
        )  # fmt: skip
    finally:
        if before is None:
            os.environ.pop(RECORDS_ENV, None)
        else:
            os.environ[RECORDS_ENV] = before
    if preview:
        for line in render(run.steps, show_diff=args.diff):
            print(line)
    print(f"Resources: {summary(run.steps)}")
    if args.timeline and not preview:
        _print_timeline(run.steps)
    if run.error is None and not preview and run.outputs is not None:
        state.save_outputs(state_file, run.outputs)
    code = _report(args.stack, run)
    if not preview:
        _page(args.stack, state_file, started, run.error is None)
    return code


def _page(stack: str, state_file: Path, started: float, succeeded: bool) -> None:
    """The lab's page next to the state, from the records of the validator this `up` ran (or,
    when it ran none and succeeded, of the last one, as its report is): its path printed. A
    page that cannot be drawn is a warning; the `up`'s result stands."""
    records = state.records_file(state_file)
    try:
        fresh = records.stat().st_mtime >= started
    except OSError:
        return  # no validator has run for this stack here yet
    if not fresh and not succeeded:
        return  # the last records are not this failed run's
    path = state.page_file(state_file)
    try:
        from overlaylab.picture import PictureError, page
    except ImportError as e:
        print(f"warning: the lab's page was not drawn: {e}", file=sys.stderr)
        return
    from overlaylab.validate import Result
    from overlaylab.validate.facts import Facts

    try:
        doc = json.loads(records.read_text())
        text = page(
            doc["spec"],
            [Result(**r) for r in doc["results"]],
            Facts.from_json(doc.get("facts")),
            seconds=float(doc["summary"]["seconds"]),
            at=doc["summary"].get("at"),
            stack=stack,
        )
        tmp = path.with_suffix(".html.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    except (OSError, ValueError, KeyError, TypeError, PictureError) as e:
        print(f"warning: the lab's page was not drawn: {e}", file=sys.stderr)
        return
    when = "" if fresh else f" (of the last validation, at {doc['summary'].get('at', '?')})"
    print(f"page of the lab: {path}{when}")


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


def _refresh(stack: str, state_file: Path, old: list[state.Record], guard: RouteGuard | None,
             pending: list[state.Operation]) -> list[state.Record]:  # fmt: skip
    """Each resource's Read; the state file then holds what they answered, and the pending
    operations it is given (refresh.go: pending creates stay unless cleared)."""
    done = refresh(old, guard)
    for name in done.changed:
        print(f"~  refreshed {name}")
    for name in done.gone:
        print(f"-  {name} is gone: it leaves the state")
    if old or pending:
        state.save(state_file, done.records, pending)
    print(f"Refreshed stack {stack}: {len(done.changed)} changed, {len(done.gone)} gone")
    return done.records


def _print_timeline(steps: list[Step]) -> None:
    print("\n  start     end   took  step     type           resource")
    for line in timeline(steps):
        print(line)


def _report(stack: str, run: Run) -> int:
    """What `up` or `preview` did, the stack's outputs and the validator's report."""
    preview = run.engine.preview
    if isinstance(run.error, interrupt.Interrupted) or interrupt.STOP.is_set():
        print(
            f"{'preview' if preview else 'up'} interrupted after {run.seconds:.1f}s: the steps "
            f"in flight finished and the state keeps what exists; run `up` again to go on, or "
            f"`python -m standin destroy --stack {stack}` to remove it",
            file=sys.stderr,
        )
        return 1
    if run.error is not None:
        print(f"error: {run.error}", file=sys.stderr)
        print(
            f"{'preview' if preview else 'up'} failed after {run.seconds:.1f}s; the state "
            f"keeps what exists: fix and run `up` again, or `python -m standin destroy "
            f"--stack {stack}` to remove it",
            file=sys.stderr,
        )
        return 1
    outputs = dict(run.outputs or {})
    report = outputs.pop("validationReport", None)
    print(json.dumps(outputs, indent=2, default=str))
    if isinstance(report, str):
        changed = [st for st in run.steps if st.kind != "same"]
        if not changed and not preview:
            made = report.rstrip().rsplit(", at ", 1)
            when = f" made at {made[1]}" if len(made) == 2 else ""
            print(
                f"\nno change: nothing ran. The validation report below is the last one{when}, "
                f"not a check of the lab now: `python -m overlaylab.validate --stack {stack}` "
                "checks it"
            )
        print(f"\nvalidation report:\n{report}")
    print(f"{'preview' if preview else 'up'} done in {run.seconds:.1f}s")
    return 0


def _writable(d: Path) -> bool:
    """The state directory, or the nearest existing one above it, can be written here."""
    while not d.exists() and d != d.parent:
        d = d.parent
    return os.access(d, os.W_OK)


def _stack_output(rest: list[str], state_file: Path, as_json: bool) -> int:
    """`pulumi stack output [NAME] [--json]`: the outputs of the stack's last successful up."""
    if rest[:1] != ["output"] or len(rest) > 2:
        print("error: use `stack output [NAME] [--json]`", file=sys.stderr)
        return 2
    outputs = state.load_outputs(state_file)
    if outputs is None:
        print(f"error: no outputs: {state_file} holds no stack that is up", file=sys.stderr)
        return 2
    if len(rest) == 2:
        if rest[1] not in outputs:
            print(
                f"error: no output {rest[1]!r}: the stack has {', '.join(sorted(outputs))}",
                file=sys.stderr,
            )
            return 2
        value = outputs[rest[1]]
        print(json.dumps(value, indent=2) if as_json or not isinstance(value, str) else value)
        return 0
    if as_json:
        print(json.dumps(outputs, indent=2))
    else:
        for k in sorted(outputs):
            v = outputs[k]
            print(f"{k:<20} {v if isinstance(v, str) else json.dumps(v)}")
    return 0
