"""The lab's page from a synthetic spec and records (no lab): every element drawn with its id
and the status its checks give it, the failed checks' values on the page, a self-contained
file; the validator's --html and --plan; the stand-in's page after `up`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from overlaylab.picture import build, element_ids, page, svg
from overlaylab.picture.model import container_id, dockerd_id, member_id, tunnel_id, vxlan_id
from overlaylab.validate import cli
from overlaylab.validate.facts import Facts
from overlaylab.validate.records import Result
from tests import picture_samples as samples

PROJECT = Path(__file__).resolve().parents[2]
AT = "2026-12-02T01:00:00Z"


def statuses(text: str) -> dict[str, str]:
    """Each element's status, by id, from the page's SVG."""
    drawing = text[text.index("<svg") : text.index("</svg>") + len("</svg>")]
    root = ET.fromstring(drawing)
    out = {}
    for el in root.iter():
        found = [c for c in el.get("class", "").split() if c.startswith("status-")]
        if el.get("id") and found:
            out[el.get("id", "")] = found[0][len("status-") :]
    return out


def titles(text: str) -> dict[str, str]:
    drawing = text[text.index("<svg") : text.index("</svg>") + len("</svg>")]
    root = ET.fromstring(drawing)
    return {g.get("id", ""): (g.findtext("title") or "") for g in root.iter("g") if g.get("id")}


def tunnels(sp: dict[str, Any]) -> list[tuple[str, str, str]]:
    hs = [h["name"] for h in sp["hosts"]]
    return [(a, b, tunnel_id(a, b)) for i, a in enumerate(hs) for b in hs[i + 1 :]]


@pytest.mark.parametrize("hosts", [2, 8])
def test_a_healthy_lab_draws_every_element_and_none_failed(hosts: int) -> None:
    sp = samples.spec(hosts)
    text = page(sp, samples.records(sp), samples.facts(sp), seconds=1.3, at=AT, stack="pic")
    got = statuses(text)
    assert set(element_ids(sp)) <= set(got), set(element_ids(sp)) - set(got)
    assert len([i for i in got if i.startswith("tunnel-")]) == hosts * (hosts - 1) // 2
    assert "failed" not in got.values()
    for h in sp["hosts"]:
        assert got[f"host-{h['name']}"] == "passed"
    for c in sp["containers"]:
        assert got[container_id(c["name"])] == "passed"
    for *_, tid in tunnels(sp):
        assert got[tid] == "passed"
    assert got["gwbridge-docker-node1"] == "unknown"  # no check looks at it
    count = len(samples.records(sp))
    assert f'<p id="summary">{count} checks, 0 failed, in 1.3s, at {AT}</p>' in text
    assert "overlay-etcd: stack pic" in text and "no layer is broken" in text
    assert "eth0 10.0.0.2 MTU 1450" in text and "MAC 02:42:0a:00:00:02" in text
    assert "VNI 256" in text and "VNI ?" not in text and "leader ?" not in text


def labels(drawn: str, eid: str) -> list[str]:
    """The lines of text an element's node shows."""
    root = ET.fromstring(drawn)
    g = next(g for g in root.iter("g") if g.get("id") == eid)
    return [(t.text or "").replace("\xa0", " ") for t in g.iter("text")]


def test_the_vni_on_vxlan0_and_the_leader_marked() -> None:
    sp = samples.spec(3)
    facts = samples.facts(sp)
    facts.etcd_leader("docker-node2")
    drawn = svg(build(sp, samples.records(sp), facts))
    for h in ("docker-node1", "docker-node2", "docker-node3"):
        assert labels(drawn, vxlan_id(h, "demo")) == ["vxlan0", "VNI 256", "MTU ?"]
        mark = "leader" if h == "docker-node2" else "follower"
        assert labels(drawn, member_id(h)) == ["etcd member", mark]
        assert f"({mark}): passed" in titles(drawn)[member_id(h)]
    assert ", VNI 256: unknown" in titles(drawn)[vxlan_id("docker-node1", "demo")]  # no check
    assert "3 members, leader docker-node2" in titles(drawn)["etcd-cluster"]
    # no status comes of them: every element is coloured by the checks alone
    known, unread = build(sp, samples.records(sp), facts), build(sp, samples.records(sp))
    assert {i: known.status(i) for i in known.elements} == {
        i: unread.status(i) for i in unread.elements
    }
    # unknown when not read (etcd did not answer): as the validator saw nothing
    facts.overlay_vnis([])
    facts.etcd_leader(None)
    drawn = svg(build(sp, samples.records(sp), facts))
    assert labels(drawn, vxlan_id("docker-node1", "demo"))[1] == "VNI ?"
    assert labels(drawn, member_id("docker-node1")) == ["etcd member", "leader ?"]
    assert "leader ?" in titles(drawn)["etcd-cluster"]


def test_a_failed_tunnel_check_colours_only_that_tunnel() -> None:
    sp = samples.spec(8)
    subject = "docker-node3 -> docker-node6"
    results = [
        replace(r, actual="UDP 4789 not delivered in 1s", ok=False)
        if (r.check, r.subject) == ("underlay.vxlan", subject)
        else r
        for r in samples.records(sp)
    ]
    got = statuses(page(sp, results, samples.facts(sp), seconds=1.0, at=AT))
    failed = sorted(i for i, st in got.items() if st == "failed")
    assert failed == [
        "leg-tunnel-docker-node3-docker-node6-docker-node3",
        "leg-tunnel-docker-node3-docker-node6-docker-node6",
        "tunnel-docker-node3-docker-node6",
    ]


@pytest.mark.parametrize("hosts", [2, 8])
def test_udp_4789_dropped_on_one_host_fails_its_tunnels_only(hosts: int) -> None:
    sp = samples.spec(hosts)
    results = samples.records(sp, vxlan_dropped_on="docker-node2")
    text = page(sp, results, samples.facts(sp), seconds=1.3, at=AT)
    got = statuses(text)
    for a, b, tid in tunnels(sp):
        assert got[tid] == ("failed" if "docker-node2" in (a, b) else "passed"), tid
    others = {i for i, st in got.items() if st == "failed"} - {t for *_, t in tunnels(sp)}
    assert all(i.startswith("leg-tunnel-") for i in others), others
    # the pings across the tunnel are the tunnel's, not the containers'
    assert got[container_id("test2")] == "passed"
    assert (
        "diagnosis: VXLAN from docker-node1 to docker-node2 is dropped: underlay ping works, "
        "UDP 4789 does not" in text
    )
    # failed checks, with expected and actual, in the table and in the tunnel's tooltip
    table = text[text.index('<table id="failed-checks">') :].split("</table>", 1)[0]
    assert table.count('<tr class="failed">') == sum(not r.ok for r in results)
    assert "<td>UDP 4789 delivered</td><td>UDP 4789 not delivered in 1s</td>" in table
    tip = titles(text)[tunnel_id("docker-node1", "docker-node2")]
    assert (
        "FAIL underlay.vxlan" in tip
        and "expected UDP 4789 delivered, got UDP 4789 not delivered in 1s" in tip
    )
    assert "drawn on tunnel-docker-node1-docker-node2" in titles(text)[container_id("test1")]


def test_attribution_follows_the_layer_that_broke() -> None:
    sp = samples.spec(2)
    healthy = samples.records(sp)

    def failing(*which: tuple[str, str], actual: str = "no reply") -> list[Result]:
        return [
            replace(r, actual=actual, ok=False) if (r.check, r.subject) in which else r
            for r in healthy
        ]

    tid = tunnel_id("docker-node1", "docker-node2")
    # a container that is not running takes the pings to and from it, not the tunnel
    down = [
        *failing(("overlay.ping", "test1 -> test2 by IP (across hosts)")),
        Result("docker.container-running", "test2@docker-node2", "x", "exited", False),
    ]
    pic = build(sp, down)
    assert (pic.status(container_id("test2")), pic.status(tid)) == ("failed", "passed")
    # a ping failing with every layer under it working: the tunnel and both containers
    pic = build(sp, failing(("overlay.ping", "test1 -> test2 by IP (across hosts)")))
    assert {pic.status(i) for i in (tid, container_id("test1"), container_id("test2"))} == {
        "failed"
    }
    # a name that does not resolve: the source container and its host's dockerd
    dns = failing(("overlay.ping", "test2 -> test1 by name (across hosts)"), actual="bad address")
    pic = build(sp, dns)
    assert pic.status(dockerd_id("docker-node2")) == "failed"
    assert (pic.status(container_id("test1")), pic.status(tid)) == ("passed", "passed")
    # serf refused: the daemon that runs serf; an etcd member down: that member
    serf = failing(("underlay.serf-tcp", "docker-node1 -> docker-node2"), actual="refused")
    assert build(sp, serf).status(dockerd_id("docker-node2")) == "failed"
    etcd = failing(("etcd.member-healthy", "docker-node1"), actual="unreachable")
    pic = build(sp, etcd)
    assert (pic.status(member_id("docker-node1")), pic.status(member_id("docker-node2"))) == (
        "failed",
        "passed",
    )
    # a whole group that could not run, unknown records: listed, drawn on nothing
    odd = Result("something.new", "who knows", "a", "b", False)
    assert build(sp, [*healthy, odd]).unplaced == [odd]


def test_the_page_is_self_contained() -> None:
    sp = samples.spec(2)
    text = page(sp, samples.records(sp, "docker-node2"), samples.facts(sp), at=AT)
    assert not re.search(r"""\b(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert not re.search(r"<(script|link|iframe|img|object|embed)\b", text, re.I)
    assert "url(" not in text and "@import" not in text
    assert "xmlns=" not in text and "<?xml" not in text  # inline SVG, no namespace URL


def test_no_value_is_invented_where_the_validator_reads_none() -> None:
    sp = samples.spec(2)
    drawn = svg(build(sp, samples.records(sp), Facts()))
    text = " | ".join(re.findall(r"<text[^>]*>([^<]*)</text>", drawn)).replace("\xa0", " ")
    assert "VNI ?" in text and "leader ?" in text and "eth0 ? MTU ?" in text
    assert "10.0.0.2" not in text  # no address seen, none drawn (the records name it)


def test_plan_draws_the_stack_without_a_lab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import overlaylab.validate.records
    import overlaylab.validate.run

    def touched(*a: object, **k: object) -> None:
        raise AssertionError("--plan reached the lab")

    monkeypatch.setattr(overlaylab.validate.run, "validate", touched)
    monkeypatch.setattr(overlaylab.validate.records.Lab, "__init__", touched)
    out = tmp_path / "plan.html"
    assert cli.main(["--stack", "scale", "--plan", "--html", str(out)]) == 0
    text = out.read_text()
    got = statuses(text)
    assert set(got.values()) == {"planned"}
    assert len([i for i in got if i.startswith("tunnel-")]) == 28
    assert "overlay-etcd: stack scale" in text and 'id="planned"' in text


def test_plan_by_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "local.html"
    res = subprocess.run(
        [sys.executable, "-m", "overlaylab.validate", "--stack", "local", "--plan", "--html",
         str(out)],
        capture_output=True, text=True, cwd=PROJECT, check=False, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"the stack as configured (nothing checked) drawn in {out}"
    assert statuses(out.read_text())["host-docker-node1"] == "planned"
    bad = subprocess.run(
        [sys.executable, "-m", "overlaylab.validate", "--plan"],
        capture_output=True, text=True, cwd=PROJECT, check=False, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "give --html FILE" in bad.stderr


def _fake_validate(results: list[Result], sp: dict[str, Any]) -> Any:
    def run(spec: dict[str, Any], **kw: Any) -> list[Result]:
        facts = kw.get("facts")
        if facts is not None:
            for k, v in vars(samples.facts(sp)).items():
                if not k.startswith("_"):
                    setattr(facts, k, v)
        return results

    return run


@pytest.mark.parametrize(("drop", "code"), [(None, 0), ("docker-node2", 1)])
def test_html_after_validating_keeps_the_exit_code(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    drop: str | None,
    code: int,
) -> None:
    import overlaylab.validate.run

    sp = samples.spec(2)
    monkeypatch.setattr(
        overlaylab.validate.run, "validate", _fake_validate(samples.records(sp, drop), sp)
    )
    out = tmp_path / "lab.html"
    assert cli.main(["--spec-json", json.dumps(sp), "--html", str(out)]) == code
    got = statuses(out.read_text())
    assert (got[tunnel_id("docker-node1", "docker-node2")] == "failed") == bool(drop)
    assert "10.0.0.3" in out.read_text()  # the facts the checks saw
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"{len(samples.records(sp, drop))}")


def test_a_page_that_cannot_be_written_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import overlaylab.validate.run

    sp = samples.spec(2)
    monkeypatch.setattr(
        overlaylab.validate.run, "validate", _fake_validate(samples.records(sp), sp)
    )
    target = tmp_path / "no" / "such" / "dir" / "lab.html"
    for argv in (["--spec-json", json.dumps(sp)], ["--stack", "local", "--plan"]):
        capsys.readouterr()
        assert cli.main([*argv, "--html", str(target)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: cannot write the page {target}: No such file or directory"]
    assert not target.parent.exists()


def test_records_kept_for_up_and_the_stand_ins_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The validator run by `up` leaves its records where the stand-in said; `up` draws the
    page next to the state from them and prints its path; a broken record file is a warning."""
    import overlaylab.validate.run
    from standin import cli as standin_cli
    from standin import state

    sp = samples.spec(2)
    results = samples.records(sp, "docker-node2")
    monkeypatch.setattr(overlaylab.validate.run, "validate", _fake_validate(results, sp))
    state_file = tmp_path / "pic.json"
    monkeypatch.setenv(cli.RECORDS_ENV, str(state.records_file(state_file)))
    assert cli.main(["--spec-json", json.dumps(sp), "--in-up"]) == 1
    kept = json.loads(state.records_file(state_file).read_text())
    assert kept["spec"] == sp and len(kept["results"]) == len(results)
    assert kept["facts"]["containers"]["test1"]["mac"] == "02:42:0a:00:00:02"
    capsys.readouterr()

    standin_cli._page("pic", state_file, started=0.0, succeeded=False)
    page_file = state.page_file(state_file)
    assert capsys.readouterr().out.strip() == f"page of the lab: {page_file}"
    text = page_file.read_text()
    assert "overlay-etcd: stack pic" in text
    assert statuses(text)[tunnel_id("docker-node1", "docker-node2")] == "failed"

    # an up that ran no validator: the last records, said so; a failed one: no page
    standin_cli._page("pic", state_file, started=2e9, succeeded=True)
    assert "(of the last validation, at" in capsys.readouterr().out
    page_file.unlink()
    standin_cli._page("pic", state_file, started=2e9, succeeded=False)
    assert not page_file.exists()

    state.records_file(state_file).write_text("{not json")
    standin_cli._page("pic", state_file, started=0.0, succeeded=True)
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("warning: the lab's page was not drawn: ")
    assert len(out.err.strip().splitlines()) == 1


def test_facts_round_trip_as_json() -> None:
    f = samples.facts(samples.spec(2))
    again = Facts.from_json(json.loads(json.dumps(f.as_json())))
    assert again.as_json() == f.as_json()
    assert again.containers["test2"].mtu == 1450
    assert (again.vnis, again.leader) == ([256], "docker-node1")
    # records kept before the VNI was read (a "vni" always null): unknown
    old = {k: v for k, v in f.as_json().items() if k not in ("vnis", "leader")}
    assert Facts.from_json({**old, "vni": None, "leader": None}).vnis == []


def test_the_page_of_a_lab_that_is_not_there() -> None:
    """The real validator (nothing to reach: its route check refuses, no daemon answers): the
    daemons and members it could not reach are drawn failed, and nothing it did not see."""
    from overlaylab.validate import validate

    sp = samples.spec(2, lab_id="absent", segment="192.168.218")
    facts = Facts()
    results = validate(sp, timeout=0, facts=facts)
    got = statuses(page(sp, results, facts, at=AT))
    assert got[dockerd_id("docker-node1")] == got[member_id("docker-node2")] == "failed"
    assert facts.underlay_mtu == {} and facts.network_ids == {}
    assert facts.vnis == [] and facts.leader is None  # no member answered: unknown
    for name, seen in facts.containers.items():
        assert seen.ip is None and seen.mac is None and "is unreachable" in seen.error, name


def test_plan_draws_a_stack_of_two_networks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The isolation stack: every container drawn, both networks' keys; a container on two
    networks is drawn on its first."""
    out = tmp_path / "plan.html"
    assert cli.main(["--stack", "isolation", "--plan", "--html", str(out)]) == 0
    got = statuses(out.read_text())
    assert set(got.values()) == {"planned"}
    for name in ("test1", "test2", "back1", "back2", "both1"):
        assert container_id(name) in got, name
    assert {i for i in got if i.startswith("key-network-")} == {
        "key-network-demo",
        "key-network-backend",
    }
