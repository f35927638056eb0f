"""``python -m overlaylab.validate``: load a spec, validate, print; exit 0, 1 or 2."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from overlaylab.errors import LabError
from overlaylab.validate.report import as_json, junit, summary


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

    return validation_spec(from_file(args.stack))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m overlaylab.validate",
        description="The post-deploy validator: checks the lab and says which layer broke.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--stack", default="local", help="derive the spec from stacks/Pulumi.STACK.yaml"
    )
    src.add_argument("--outputs", help="a file of `pulumi stack output --json`")
    src.add_argument("--spec", help="a file holding the validation spec")
    src.add_argument("--spec-json", help="the validation spec itself")
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait for convergence")
    p.add_argument("--json", action="store_true", help="print records as JSON")
    p.add_argument("--junit", metavar="FILE", help="also write the records as JUnit XML to FILE")
    p.add_argument(
        "--in-up",
        action="store_true",
        help="run by `up`: members and node keys of hosts leaving the stack are reported, "
        "not failed (the engine deletes them after the program)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    from overlaylab.validate.run import validate

    args = parser().parse_args(argv)
    try:
        spec = load_spec(args)
        check_spec(spec)
    except (LabError, OSError, ValueError, KeyError) as e:
        print(f"error: cannot load the validation spec: {e}", file=sys.stderr)
        return 2
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    start = time.monotonic()
    results = validate(spec, timeout=args.timeout, in_up=args.in_up)
    seconds = time.monotonic() - start
    failed = sum(not r.ok for r in results)
    if args.json:
        print(json.dumps(as_json(results, seconds, at), indent=2))
    else:
        print(summary(results, seconds, at))
    if args.junit:
        try:
            with open(args.junit, "wb") as f:
                f.write(junit(results, seconds))
        except OSError as e:
            print(f"error: cannot write the JUnit report {args.junit}: {e}", file=sys.stderr)
            return 2
    if failed:
        print(f"validation failed: {failed} of {len(results)} checks", file=sys.stderr)
    return 1 if failed else 0
