"""The validator's catalogue of named tests: selection (cilium's ``--test``), which groups run,
skip reasons, ``--list``, the summary's counts, JUnit by test, JSON."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from overlaylab.config import parse
from overlaylab.spec import validation_spec
from overlaylab.validate import catalogue, run
from overlaylab.validate.catalogue import CATALOGUE, SelectionError, outcomes, select
from overlaylab.validate.records import Lab, Result, _r
from overlaylab.validate.report import as_json, junit, summary
from tests.labtools import lab_config, validate_cli

ALL = frozenset(t.name for t in CATALOGUE)
#: Groups of checks another change adds to run.py; until then their tests are skipped.
PENDING_GROUPS: set[str] = set()
#: The catalogue's size: the tests, and the check names they own (each counted once).
N_TESTS = len(CATALOGUE)
N_CHECKS = len({c for t in CATALOGUE for c in t.checks})


def local_spec(hosts: int = 2, per_host: int = 1) -> dict[str, Any]:
    return validation_spec(
        parse(lab_config(hosts=hosts, lab_id="absent", segment="192.168.218",
                         containers_per_host=per_host))
    )  # fmt: skip


def ssh_spec() -> dict[str, Any]:
    spec = local_spec()
    spec["lab"]["transport"] = "ssh"
    for h in spec["hosts"]:
        h["dockerHost"] = f"ssh://root@{h['address']}:22"
    return spec


# --- selection -------------------------------------------------------------------------------


def test_includes_are_searched_in_the_names_and_add_up() -> None:
    assert select(["ping"]) == {"underlay-ping", "overlay-ping-by-address", "overlay-ping-by-name"}
    assert select(["^etcd-", "path-mtu"]) == {"etcd-members", "etcd-nodes", "path-mtu"}


def test_excludes_alone_mean_all_but_those_and_subtract_from_includes() -> None:
    assert select(["!^etcd-"]) == ALL - {"etcd-members", "etcd-nodes"}
    assert select(["etcd", "!nodes"]) == {"etcd-members"}
    assert select(["underlay", "!vxlan", "!serf"]) == {"underlay-ping", "underlay-mtu"}


def test_a_pattern_that_matches_no_test_or_is_no_regex_is_refused() -> None:
    with pytest.raises(SelectionError, match=re.escape("'!nope' matches no test: see --list")):
        select(["etcd", "!nope"])
    with pytest.raises(SelectionError, match=re.escape("'ping[' is not a regular expression")):
        select(["ping["])


def test_selection_decides_the_groups() -> None:
    assert catalogue.groups_for(None) is None
    assert catalogue.groups_for(select(["by-name"])) == {"connectivity"}
    assert catalogue.groups_for(select(["docker-keys"])) == {"network", "endpoints"}
    assert (
        catalogue.groups_for(select(["!underlay", "!sandbox"]))
        == set(run.GROUPS)
        - {
            "underlay",
            "underlay-ssh",
            "sandbox",
        }
        | PENDING_GROUPS
    )


def test_every_group_is_needed_by_a_test_and_every_test_needs_known_groups() -> None:
    needed = {g for t in CATALOGUE for g in t.groups}
    assert set(run.GROUPS) <= needed
    assert needed - set(run.GROUPS) <= PENDING_GROUPS


def test_every_check_the_validator_writes_belongs_to_a_test() -> None:
    src = "".join(p.read_text() for p in Path(run.__file__).parent.glob("*.py"))
    names = set(re.findall(r'_r\(\s*"([a-z]+\.[a-z-]+)"', src))
    assert len(names) >= 25, names
    for name in names:
        assert any(name in t.checks for t in CATALOGUE), name
    # the pings: by IP and by name are two tests, and each subject belongs to exactly one
    for subject in ("a -> b by IP (across hosts)", "a -> b by name (same host)"):
        assert len(catalogue.owners(_r("overlay.ping", subject, "reply", "reply"))) == 1


# --- which groups run ------------------------------------------------------------------------


def fake_group(name: str, *checks: str) -> tuple[str, Any]:
    def fn(lab: Lab) -> list[Result]:
        ran.append(name)
        return [_r(c, "a -> b by IP (across hosts)", "reply", "no reply") for c in checks]

    return name, fn


ran: list[str] = []


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """run.py's groups replaced by fakes that say they ran; every record fails (a failed
    cross-host ping triggers the sandbox's group)."""
    ran.clear()
    monkeypatch.setattr(
        run,
        "CONVERGING",
        [
            fake_group("etcd", "etcd.member-healthy"),
            fake_group("underlay", "underlay.ping", "underlay.vxlan"),
            fake_group("connectivity", "overlay.ping"),
        ],
    )
    _, name_rule = fake_group("name-rule", "overlay.name-unique")
    _, sandbox = fake_group("sandbox", "overlay.sandbox-fdb")
    monkeypatch.setattr(run, "check_name_rule", name_rule)
    monkeypatch.setattr(run, "check_sandboxes", lambda lab, pairs: sandbox(lab))
    monkeypatch.setattr(run, "check_underlay_over_ssh", lambda lab, pairs: [])
    _, gone = fake_group("names-gone", "overlay.name-gone")
    monkeypatch.setattr(run._NamesGone, "check", lambda self, lab: gone(lab))
    _, silent = fake_group("silent", "silent.udp-errors")
    monkeypatch.setattr(run.counters, "read", lambda lab, marks=True: {})
    monkeypatch.setattr(run.counters, "compare", lambda lab, a, b: silent(lab))
    return ran


def test_without_a_selection_every_group_runs_and_every_record_is_kept(fakes: list[str]) -> None:
    results = run.validate(local_spec(), timeout=0)
    assert sorted(fakes) == [
        "connectivity", "etcd", "name-rule", "names-gone", "sandbox", "silent", "underlay",
    ]  # fmt: skip
    assert [r.check for r in results] == [
        "etcd.member-healthy",
        "underlay.ping",
        "underlay.vxlan",
        "overlay.ping",
        "overlay.name-gone",
        "overlay.name-unique",
        "silent.udp-errors",
        "overlay.sandbox-fdb",
    ]


def test_a_deselected_test_runs_nothing_it_alone_needs(fakes: list[str]) -> None:
    results = run.validate(local_spec(), timeout=0, tests=select(["underlay-vxlan"]))
    assert fakes == ["underlay"]
    # the group's other records belong to tests not selected: not reported
    assert [r.check for r in results] == ["underlay.vxlan"]


def test_the_sandbox_runs_after_a_failed_ping_only_when_selected(fakes: list[str]) -> None:
    run.validate(local_spec(), timeout=0, tests=select(["by-address"]))
    assert fakes == ["connectivity"]
    fakes.clear()
    results = run.validate(local_spec(), timeout=0, tests=select(["by-address", "sandbox"]))
    assert sorted(fakes) == ["connectivity", "sandbox"]
    assert [r.check for r in results] == ["overlay.ping", "overlay.sandbox-fdb"]


# --- outcomes and skip reasons ---------------------------------------------------------------


def by_name(tests: list[catalogue.Outcome]) -> dict[str, catalogue.Outcome]:
    return {o.test: o for o in tests}


PASS = [
    _r("etcd.member-healthy", "docker-node1", "healthy", "healthy"),
    _r("overlay.ping", "test1 -> test2 by IP (across hosts)", "reply", "reply"),
    _r("overlay.ping", "test1 -> test2 by name (across hosts)", "reply", "no reply"),
]


def test_ssh_stacks_skip_the_namespace_probes_with_the_reason() -> None:
    spec = ssh_spec()
    tests = by_name(outcomes(spec, PASS, None, catalogue.probe_reason(spec)))
    for name in ("underlay-vxlan", "underlay-serf", "underlay-mtu", "overlay-sandbox"):
        assert tests[name].status == "skipped"
        assert tests[name].reason == "an SSH stack has no namespace probes"
    assert tests["underlay-serf"].skipped_checks == ("underlay.serf-udp", "underlay.serf-tcp")
    assert tests["etcd-members"].status == "passed"
    assert tests["overlay-ping-by-address"].status == "passed"
    assert tests["overlay-ping-by-name"].status == "failed"
    # ran nothing, for its own reason, not the transport's
    assert tests["isolation"].reason == "needs two networks"
    assert tests["docker-keys"].reason == "ran no checks"


def test_a_local_lab_without_root_skips_them_for_that_reason() -> None:
    why = catalogue.probe_reason(local_spec(), can_enter=False)
    assert why is not None and why.startswith("no namespace probes here: they need root")
    assert catalogue.probe_reason(local_spec(), can_enter=True) is None
    tests = by_name(outcomes(local_spec(), [], None, why))
    assert tests["underlay-vxlan"].reason == why


@pytest.mark.parametrize("spec", [local_spec(), ssh_spec()], ids=["local", "ssh"])
def test_the_probe_reason_says_what_the_lab_decides(spec: dict[str, Any]) -> None:
    lab = Lab(spec)
    try:
        assert lab.local == (catalogue.probe_reason(spec) is None)
    finally:
        lab.close()


def test_too_few_hosts_or_containers_are_the_reason() -> None:
    tests = by_name(outcomes(local_spec(hosts=1), [], None, None))
    assert tests["underlay-vxlan"].reason == "needs two hosts"
    assert tests["name-unique"].reason == "needs two hosts"
    assert tests["path-mtu"].reason == "needs containers on two hosts"
    assert tests["overlay-ping-by-name"].status == "skipped"  # one container: no pair
    assert tests["overlay-ping-by-name"].reason == "needs two containers"
    two_here = by_name(outcomes(local_spec(hosts=1, per_host=2), [], None, None))
    assert two_here["overlay-ping-by-name"].reason == "ran no checks"
    assert two_here["path-mtu"].reason == "needs containers on two hosts"


def test_not_selected_tests_are_skipped_as_such() -> None:
    tests = by_name(outcomes(local_spec(), PASS, select(["etcd-members"]), None))
    assert tests["etcd-members"].status == "passed"
    assert {o.reason for n, o in tests.items() if n != "etcd-members"} == {"not selected (--test)"}


def test_a_groups_own_error_fails_every_test_that_needs_the_group() -> None:
    err = _r("underlay", "lab", "reachable", "boom", False)
    tests = by_name(outcomes(local_spec(), [err], None, None))
    for name in ("underlay-ping", "underlay-vxlan", "underlay-serf", "underlay-mtu"):
        assert tests[name].status == "failed" and tests[name].results == (err,)
    assert tests["etcd-members"].status == "skipped"


def test_a_record_of_no_test_is_its_own_failed_test() -> None:
    stray = _r("overlay.brand-new", "x", "a", "b")
    tests = outcomes(local_spec(), [stray], None, None)
    assert tests[-1].test == catalogue.UNCATALOGUED
    assert tests[-1].status == "failed" and tests[-1].results == (stray,)


# --- the report ------------------------------------------------------------------------------


def test_the_last_line_keeps_checks_and_failed_first_and_adds_the_tests() -> None:
    spec = ssh_spec()
    tests = outcomes(spec, PASS, None, catalogue.probe_reason(spec))
    lines = summary(PASS, 1.25, "2026-12-02T07:00:00Z", tests).splitlines()
    assert lines[-1] == (
        f"3 checks, 1 failed (2 passed, {N_CHECKS - 3} skipped); 3 tests, 1 failed (2 passed, "
        f"{N_TESTS - 3} skipped),"
        " in 1.2s, at 2026-12-02T07:00:00Z"
    )
    assert " 0 failed" not in lines[-1]
    assert re.match(r"\d+ checks, \d+ failed", lines[-1])
    assert "skip underlay-vxlan         an SSH stack has no namespace probes" in lines
    assert "skip isolation              needs two networks" in lines
    ok = outcomes(spec, PASS[:2], None, None)
    last = summary(PASS[:2], 0.1, None, ok).splitlines()[-1]
    assert last.startswith("2 checks, 0 failed (2 passed, ") and "; 2 tests, 0 failed (" in last


def test_unselected_tests_are_one_line() -> None:
    tests = outcomes(local_spec(), PASS[:1], select(["etcd-members", "isolation"]), None)
    lines = summary(PASS[:1], 0.1, None, tests).splitlines()
    skips = [ln for ln in lines if ln.startswith("skip ")]
    assert skips[0] == "skip isolation              needs two networks"
    assert skips[1].startswith("skip (not selected)         etcd-nodes, docker-network, ")
    assert len(skips) == 2


def test_junit_has_a_testsuite_per_test_and_skipped_ones_carry_the_reason() -> None:
    spec = ssh_spec()
    tests = outcomes(spec, PASS, None, catalogue.probe_reason(spec))
    root = ET.fromstring(junit(PASS, 2.0, tests))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert list(suites) == [t.name for t in CATALOGUE]
    name = suites["overlay-ping-by-name"]
    assert (name.get("tests"), name.get("failures"), name.get("skipped")) == ("1", "1", "0")
    case = name.find("testcase")
    assert case is not None and case.get("classname") == "overlay.ping"
    assert case.get("name") == "test1 -> test2 by name (across hosts)"
    failure = case.find("failure")
    assert failure is not None and failure.get("message") == "expected reply, got no reply"
    serf = suites["underlay-serf"]
    assert serf.get("skipped") == "2"
    skipped = [c.find("skipped") for c in serf.iter("testcase")]
    assert [s.get("message") for s in skipped if s is not None] == [
        "an SSH stack has no namespace probes"
    ] * 2
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == (
        str(N_CHECKS),
        "1",
        str(N_CHECKS - 3),
    )


def test_json_has_the_tests_and_their_counts() -> None:
    spec = ssh_spec()
    tests = outcomes(spec, PASS, None, catalogue.probe_reason(spec))
    doc = json.loads(json.dumps(as_json(PASS, 1.0, None, tests)))
    assert (doc["summary"]["count"], doc["summary"]["failed"]) == (3, 1)  # as before
    assert doc["summary"]["tests"] == 3 and doc["summary"]["testsSkipped"] == N_TESTS - 3
    assert doc["summary"]["checksSkipped"] == N_CHECKS - 3
    got = {t["name"]: t for t in doc["tests"]}
    assert got["overlay-ping-by-name"] == {
        "name": "overlay-ping-by-name",
        "description": "every container pings every other by name (Docker's embedded DNS)",
        "status": "failed",
        "checks": 1,
        "failed": 1,
    }
    assert got["underlay-mtu"]["reason"] == "an SSH stack has no namespace probes"
    assert got["underlay-mtu"]["skippedChecks"] == ["underlay.mtu"]


# --- the command line ------------------------------------------------------------------------


def test_list_without_a_spec_is_the_catalogue() -> None:
    bare = subprocess.run(
        [sys.executable, "-m", "overlaylab.validate", "--list"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert bare.returncode == 0, bare.stderr
    lines = bare.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == [t.name for t in CATALOGUE]
    assert lines[0].split(None, 2)[1:] == [
        "local/ssh",
        "every etcd member is healthy and lists exactly the stack's hosts",
    ]
    assert "underlay-vxlan           local      UDP 4789" in bare.stdout
    assert "runs here" not in bare.stdout


def test_list_with_a_spec_says_what_runs_on_its_transport() -> None:
    res = validate_cli(ssh_spec(), 0, "--list", "--test", "underlay-vxlan|etcd-members")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("etcd-members") and lines[0].endswith("[runs here]")
    assert lines[1].endswith("[skipped here: an SSH stack has no namespace probes]")


def test_an_unknown_test_is_one_line_and_exit_2() -> None:
    res = validate_cli(local_spec(), 0, "--test", "etcd", "--test", "!no-such-test")
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr.splitlines() == [
        "error: --test '!no-such-test' matches no test: see --list for the tests' names"
    ]


def test_the_cli_reports_the_selected_tests(tmp_path: Path) -> None:
    xml = tmp_path / "v.xml"
    res = validate_cli(local_spec(), 0, "--test", "etcd-members", "--junit", str(xml))
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    assert {ln.split()[1] for ln in lines if ln.startswith("FAIL")} == {"etcd.member-healthy"}
    assert lines[-1].startswith("2 checks, 2 failed (0 passed, ")
    assert f"; 1 tests, 1 failed (0 passed, {N_TESTS - 1} skipped), in " in lines[-1]
    suites = ET.parse(xml).getroot().findall("testsuite")
    assert [s.get("name") for s in suites if s.get("failures") != "0"] == ["etcd-members"]


def test_the_validation_step_runs_every_test_unless_told() -> None:
    from components.validation import ValidationArgs, validator_argv

    args = ValidationArgs(spec={"a": 1}, after=[], triggers=[], commands=None)  # type: ignore[arg-type]
    assert validator_argv(args) == ["--spec-json", '{"a": 1}', "--timeout", "60", "--in-up"]
    some = ValidationArgs({"a": 1}, [], [], None, tests=("etcd", "!nodes"))  # type: ignore[arg-type]
    assert validator_argv(some)[-4:] == ["--test", "etcd", "--test", "!nodes"]


def test_the_stack_config_selects_ups_tests(record_graph: Any, seed_config: dict[str, Any]) -> None:
    seed_config["validation"] = {"tests": ["etcd", "!nodes"]}
    assert parse(seed_config).validate_tests == ("etcd", "!nodes")
    g = record_graph(seed_config)
    create = g.run.engine.inputs[g.named("validate-run").urn]["create"]
    assert create.endswith("--in-up --test etcd --test '!nodes'"), create
    assert parse(lab_config()).validate_tests == ()  # none: every test, the command as before


@pytest.mark.parametrize(
    ("tests", "said"),
    [
        (["nope"], "validation.tests: 'nope' matches no test: see --list for the tests' names"),
        (["("], "validation.tests: '(' is not a regular expression"),
        ("etcd", "validation.tests must be a list of test name patterns"),
    ],
)
def test_bad_config_tests_are_one_line(tests: Any, said: str) -> None:
    from overlaylab.errors import ConfigError

    raw = lab_config()
    raw["validation"] = {"tests": tests}
    with pytest.raises(ConfigError) as e:
        parse(raw)
    assert str(e.value).startswith(said) and "\n" not in str(e.value)


def test_isolation_and_placement_say_why_they_did_not_run() -> None:
    one = by_name(outcomes(local_spec(), [], None, None))
    assert one["isolation"].reason == "needs two networks"
    assert one["placement"].reason == "ran no checks"  # local: it runs with one network
    two = local_spec()
    two["networks"] = [two["network"], {"name": "backend", "subnet": "10.0.1.0/24"}]
    assert by_name(outcomes(two, [], None, None))["isolation"].reason == (
        "needs two containers that share no network"
    )
    spec = ssh_spec()
    ssh = by_name(outcomes(spec, [], None, catalogue.probe_reason(spec)))
    assert ssh["placement"].reason == "an SSH stack has no namespace probes"
    iso = _r("overlay.isolation", "a -> b on backend", "no answer", "answer", False)
    assert by_name(outcomes(two, [iso], None, None))["isolation"].status == "failed"


def test_the_docs_show_the_catalogue_as_list_prints_it() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "validator.md").read_text()
    assert "\n".join(catalogue.listing()) + "\n" in doc
