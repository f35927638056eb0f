"""The validator's records as text, JSON and JUnit XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from overlaylab.validate import suites
from overlaylab.validate.catalogue import Outcome, counts
from overlaylab.validate.diagnose import diagnose
from overlaylab.validate.records import Result


def summary(
    results: Iterable[Result],
    seconds: float,
    at: str | None = None,
    tests: list[Outcome] | None = None,
) -> str:
    """FAIL lines, then the passes, then (with ``tests``) the skipped tests with their
    reasons, then one diagnosis line per broken layer, then the count (last, so that a caller
    reading the last line gets the verdict) and, with ``at``, when the checks ran: a report
    kept in the stack's outputs says how old it is."""
    results = list(results)
    failed = [r for r in results if not r.ok]
    lines = [r.line() for r in failed] + [r.line() for r in results if r.ok]
    if tests is not None:
        lines += suites.skip_lines(tests)
    lines += diagnose(results)
    lines.append(count_line(results, seconds, at, tests))
    return "\n".join(lines)


def count_line(
    results: list[Result],
    seconds: float,
    at: str | None = None,
    tests: list[Outcome] | None = None,
) -> str:
    """The report's last line: ``N checks, F failed, in S s`` and, with ``at``, when; with
    ``tests``, the checks' and the tests' counts (:func:`.suites.count_text`) before ``in``."""
    when = f", at {at}" if at else ""
    if tests is not None:
        return f"{suites.count_text(results, tests)}, in {seconds:.1f}s{when}"
    failed = sum(not r.ok for r in results)
    return f"{len(results)} checks, {failed} failed, in {seconds:.1f}s{when}"


def as_json(
    results: list[Result],
    seconds: float,
    at: str | None = None,
    tests: list[Outcome] | None = None,
) -> dict[str, Any]:
    """The records, the diagnosis and the summary; with ``tests``, each test's outcome
    (``tests``) and the tests' and checks' counts in the summary."""
    doc: dict[str, Any] = {
        "results": [asdict(r) for r in results],
        "diagnosis": diagnose(results),
        "summary": {
            "count": len(results),
            "failed": sum(not r.ok for r in results),
            "seconds": round(seconds, 2),
            **({"at": at} if at else {}),
        },
    }
    if tests is not None:
        doc["tests"] = [o.as_json() for o in tests]
        doc["summary"].update(counts(tests, results))
    return doc


def junit(results: list[Result], seconds: float, tests: list[Outcome] | None = None) -> bytes:
    """One testsuite; a testcase per record (classname = check, name = subject); a failed
    record carries ``<failure message="expected X, got Y">``; diagnosis lines go to
    ``<system-out>``. With ``tests``: one testsuite per test (:func:`.suites.junit`)."""
    if tests is not None:
        return suites.junit(tests, seconds, diagnose(results))
    failed = sum(not r.ok for r in results)
    suite = ET.Element(
        "testsuite",
        name="overlaylab.validate",
        tests=str(len(results)),
        failures=str(failed),
        errors="0",
        skipped="0",
        time=f"{seconds:.3f}",
    )
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=r.check, name=r.subject, time="0")
        if r.ok:
            ET.SubElement(case, "system-out").text = r.actual
        else:
            fail = ET.SubElement(
                case, "failure", message=f"expected {r.expected}, got {r.actual}", type=r.check
            )
            fail.text = r.line()
    ET.SubElement(suite, "system-out").text = "\n".join(diagnose(results))
    root = ET.Element("testsuites", tests=str(len(results)), failures=str(failed))
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
