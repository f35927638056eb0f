"""``python -m overlaylab.validate``: load a spec, validate, print; exit 0, 1 or 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

from overlaylab.errors import LabError
from overlaylab.validate import catalogue
from overlaylab.validate.facts import Facts
from overlaylab.validate.records import Result
from overlaylab.validate.report import as_json, junit, summary

#: Set by the stand-in's `up`: where the validator also leaves its records, what it saw and its
#: spec as JSON, from which `up` draws the lab's page next to the stack's state.
RECORDS_ENV = "OVERLAYLAB_VALIDATE_RECORDS"


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
        return dict(json.loads(args.spec_json))
    if args.spec:
        with open(args.spec) as f:
            return dict(json.load(f))
    if args.outputs:
        with open(args.outputs) as f:
            return dict(json.load(f)[OUT_VALIDATION_SPEC])
    from overlaylab.stackconfig import from_file

    return validation_spec(from_file(args.stack or "local"))


def checked_spec(args: argparse.Namespace) -> dict[str, Any] | None:
    """The spec the arguments name, checked; None, said in one line, when it cannot be."""
    try:
        spec = load_spec(args)
        check_spec(spec)
    except (LabError, OSError, ValueError, KeyError) as e:
        print(f"error: cannot load the validation spec: {e}", file=sys.stderr)
        return None
    return spec


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m overlaylab.validate",
        description="The post-deploy validator: checks the lab and says which layer broke.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--stack", help="derive the spec from stacks/Pulumi.STACK.yaml (default: local)"
    )
    src.add_argument("--outputs", help="a file of `pulumi stack output --json`")
    src.add_argument("--spec", help="a file holding the validation spec")
    src.add_argument("--spec-json", help="the validation spec itself")
    p.add_argument(
        "--test",
        action="append",
        default=[],
        metavar="REGEX",
        help="run the tests whose name matches REGEX (repeatable; !REGEX excludes; only "
        "excludes: all but those); see --list",
    )
    p.add_argument(
        "--list",
        action="store_true",
        help="print the tests (with a spec given: whether each runs on it) and exit",
    )
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait for convergence")
    p.add_argument("--json", action="store_true", help="print records as JSON")
    p.add_argument("--junit", metavar="FILE", help="also write the records as JUnit XML to FILE")
    p.add_argument(
        "--html",
        metavar="FILE",
        help="also write a page with a drawing of the lab coloured by the checks to FILE",
    )
    p.add_argument(
        "--plan",
        action="store_true",
        help="with --html: draw the stack as configured and check nothing (no lab needed)",
    )
    p.add_argument(
        "--in-up",
        action="store_true",
        help="run by `up`: members and node keys of hosts leaving the stack are reported, "
        "not failed (the engine deletes them after the program); a failed run leaves its "
        "evidence beside the stack's state",
    )
    p.add_argument(
        "--dump",
        metavar="DIR",
        help="when the validation fails, write what explains it to DIR: etcd's /docker keys, "
        "each daemon's info and network inspect, links, sandboxes' fdb and neighbours, logs, "
        "versions and these records (docs/validator.md)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    from overlaylab.validate.run import validate

    p = parser()
    args = p.parse_args(argv)
    if args.plan and not args.html:
        p.error("--plan draws the stack as configured: give --html FILE")
    try:
        selected = catalogue.select(args.test) if args.test else None
    except catalogue.SelectionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.list:
        return list_tests(args, selected)
    spec = checked_spec(args)
    if spec is None:
        return 2
    stack = None if (args.spec_json or args.spec or args.outputs) else (args.stack or "local")
    if args.plan:
        if not write_page(args.html, spec, stack=stack, planned=True):
            return 2
        print(f"the stack as configured (nothing checked) drawn in {args.html}")
        return 0
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    start = time.monotonic()
    facts = Facts()
    results = validate(spec, timeout=args.timeout, in_up=args.in_up, facts=facts, tests=selected)
    seconds = time.monotonic() - start
    tests = catalogue.outcomes(spec, results, selected, catalogue.probe_reason(spec))
    if os.environ.get(RECORDS_ENV):
        keep_records(os.environ[RECORDS_ENV], spec, results, facts, seconds, at, tests)
    failed = sum(not r.ok for r in results)
    if args.json:
        print(json.dumps(as_json(results, seconds, at, tests), indent=2))
    else:
        print(summary(results, seconds, at, tests))
    if args.junit:
        try:
            with open(args.junit, "wb") as f:
                f.write(junit(results, seconds, tests))
        except OSError as e:
            print(f"error: cannot write the JUnit report {args.junit}: {e}", file=sys.stderr)
            return 2
    if args.html and not write_page(
        args.html, spec, results, facts, seconds=seconds, at=at, stack=stack
    ):
        return 2
    if failed:
        print(f"validation failed: {failed} of {len(results)} checks", file=sys.stderr)
        where = args.dump or (dump_dir(spec, at) if args.in_up else None)
        if where:
            records = {**as_json(results, seconds, at), "facts": facts.as_json()}
            print(write_dump(where, spec, records), file=sys.stderr)  # the last line: where
    elif args.dump:
        print(f"no dump written to {args.dump}: the validation passed", file=sys.stderr)
    return 1 if failed else 0


def list_tests(args: argparse.Namespace, selected: frozenset[str] | None) -> int:
    """``--list``: the catalogue (the selected tests with ``--test``); with a spec given,
    whether each test runs on it."""
    spec = None
    if args.stack or args.outputs or args.spec or args.spec_json:
        spec = checked_spec(args)
        if spec is None:
            return 2
    for line, test in zip(catalogue.listing(spec), catalogue.CATALOGUE, strict=True):
        if selected is None or test.name in selected:
            print(line)
    return 0


def dump_dir(spec: dict[str, Any], at: str) -> str:
    """Where `up` leaves a failed validation's evidence: beside the stack's state (the
    records' file `up` names) as ``<state>.dump-<time>``; without it, a local lab's state
    directory (``<stateDir>/<lab>.dumps/<time>``), else ``overlaylab-dump-<time>`` here."""
    stamp = at.replace("-", "").replace(":", "")
    records = os.environ.get(RECORDS_ENV)
    if records:
        base = records.removesuffix(".json").removesuffix(".validation")
        return f"{base}.dump-{stamp}"
    url = str(spec["hosts"][0]["dockerHost"]) if spec.get("hosts") else ""
    if url.startswith("unix://"):
        # beside the lab's directory (which its teardown removes, and which must not outlive it)
        lab_dir = os.path.dirname(os.path.dirname(url[len("unix://") :]))
        return os.path.join(f"{lab_dir}.dumps", stamp)
    return f"overlaylab-dump-{stamp}"


def write_dump(where: str, spec: dict[str, Any], records: dict[str, Any]) -> str:
    """The dump (``overlaylab.labdump.write_evidence``) into ``where``; the line to print."""
    from pathlib import Path

    from overlaylab.labdump import write_evidence

    try:
        root = write_evidence(Path(where), spec, records)
    except OSError as e:
        return f"error: cannot write the evidence of this failure to {where}: {e.strerror or e}"
    return f"evidence of this failure in {root} (its index.json lists each part)"


def write_page(path: str, spec: dict[str, Any], *args: Any, **kw: Any) -> bool:
    """The page (``overlaylab.picture.page``'s arguments) written to ``path``; False, said in
    one line, where it cannot be drawn or written."""
    try:
        from overlaylab.picture import PictureError, page

        text = page(spec, *args, **kw)
    except (ImportError, PictureError) as e:
        print(f"error: cannot draw the page {path}: {e}", file=sys.stderr)
        return False
    try:
        _write(path, text)
    except OSError as e:
        print(f"error: cannot write the page {path}: {e.strerror or e}", file=sys.stderr)
        return False
    return True


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def keep_records(
    path: str,
    spec: dict[str, Any],
    results: list[Result],
    facts: Facts,
    seconds: float,
    at: str,
    tests: list[catalogue.Outcome] | None = None,
) -> None:
    """The records, the facts and the spec as JSON at ``path`` (for `up`'s page); a failure is
    a warning: the validation's result stands."""
    doc = {"spec": spec, **as_json(results, seconds, at, tests), "facts": facts.as_json()}
    try:
        _write(path, json.dumps(doc, indent=1))
    except OSError as e:
        why = e.strerror or e
        print(f"warning: cannot keep the records for the page in {path}: {why}", file=sys.stderr)
