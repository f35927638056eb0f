"""The report by named test (:mod:`.catalogue`): the skipped tests' lines, the counts of the
last line, and JUnit XML with one testsuite per test."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from overlaylab.validate.catalogue import NOT_SELECTED, Outcome, counts
from overlaylab.validate.records import Result


def skip_lines(tests: list[Outcome]) -> list[str]:
    """One ``skip`` line per selected test that did not run, with its reason; the tests left
    out by ``--test`` in one line."""
    skipped = [o for o in tests if o.status == "skipped"]
    lines = [f"skip {o.test:<22} {o.reason}" for o in skipped if o.reason != NOT_SELECTED]
    unselected = [o.test for o in skipped if o.reason == NOT_SELECTED]
    if unselected:
        lines.append(f"skip {'(not selected)':<22} {', '.join(unselected)}")
    return lines


def count_text(results: Sequence[Result], tests: Sequence[Outcome]) -> str:
    """``N checks, F failed (P passed, S skipped); T tests, F failed (P passed, S skipped)``:
    the last line's ``N checks, F failed`` stays first, as its readers expect."""
    n = counts(tests, results)
    return (
        f"{n['checks']} checks, {n['checksFailed']} failed ({n['checksPassed']} passed, "
        f"{n['checksSkipped']} skipped); {n['tests']} tests, {n['testsFailed']} failed "
        f"({n['testsPassed']} passed, {n['testsSkipped']} skipped)"
    )


def junit(tests: list[Outcome], seconds: float, diagnosis: list[str]) -> bytes:
    """One testsuite per test (its description a property), a testcase per record
    (classname = check, name = subject), a failed record with ``<failure message="expected X,
    got Y">``; a skipped test is a testsuite of one skipped testcase per check name, carrying
    the reason. The diagnosis lines go to each failed test's ``<system-out>``."""
    root = ET.Element("testsuites", name="overlaylab.validate", time=f"{seconds:.3f}")
    total = failures = skipped = 0
    for o in tests:
        cases = len(o.results) if o.status != "skipped" else len(o.skipped_checks)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=o.test,
            tests=str(cases),
            failures=str(o.failed),
            errors="0",
            skipped=str(cases if o.status == "skipped" else 0),
            time="0",
        )
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="description", value=o.description)
        if o.status == "skipped":
            for check in o.skipped_checks:
                case = ET.SubElement(suite, "testcase", classname=check, name=o.test, time="0")
                ET.SubElement(case, "skipped", message=o.reason)
        for r in o.results:
            case = ET.SubElement(suite, "testcase", classname=r.check, name=r.subject, time="0")
            if r.ok:
                ET.SubElement(case, "system-out").text = r.actual
            else:
                fail = ET.SubElement(
                    case, "failure", message=f"expected {r.expected}, got {r.actual}", type=r.check
                )
                fail.text = r.line()
        if o.status == "failed" and diagnosis:
            ET.SubElement(suite, "system-out").text = "\n".join(diagnosis)
        total += cases
        failures += o.failed
        skipped += cases if o.status == "skipped" else 0
    root.set("tests", str(total))
    root.set("failures", str(failures))
    root.set("skipped", str(skipped))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
