"""The benchmark's reports from synthetic steps, /proc trees and iperf3 results (no lab, no
iperf3 run): the critical path of an up, the CPU floor, the table's failure rate, the 16-host
target, the data plane's spread, offloads and interleaving."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.bench_lab import (
    Dataplane,
    MeasureError,
    Offloads,
    Placement,
    Round,
    Size,
    _why,
    bad_args,
    critical_report,
    dataplane_notes,
    dataplane_table,
    iperf_argv,
    iperf_result,
    parse_ethtool_k,
    parse_ip_details,
    phase_report,
    phases,
    schedule,
    spread,
    table,
    targets,
)
from bench.critpath import (
    Cpu,
    CpuMeter,
    critical_path,
    edges,
    machine_ticks,
    path_lines,
    tree_ticks,
)


@dataclass
class S:
    urn: str
    type: str
    name: str
    kind: str
    seconds: float
    started: float


@dataclass
class R:
    urn: str
    deps: list[str]
    parent: str = ""
    provider: str = ""


def _lab() -> tuple[list[S], dict[str, set[str]]]:
    """etcd1, etcd2 -> gate -> dockerd1 -> dockerd2 -> net -> c1, c2 -> validate; and a
    side step (image) that ends early."""
    t = "command:local:Command"
    steps = [
        S("etcd1", t, "etcd1", "create", 1.0, 0.5),
        S("etcd2", t, "etcd2", "create", 3.0, 0.5),  # ends at 3.5: the gate waits on it
        S("image", t, "image", "create", 0.5, 0.2),
        S("gate", t, "gate", "create", 1.0, 3.7),  # waited 0.2 after etcd2
        S("dockerd1", t, "dockerd1", "create", 1.0, 4.7),
        S("dockerd2", t, "dockerd2", "create", 1.0, 5.9),
        S("net", "docker:index/network:Network", "demo", "create", 0.5, 6.9),
        S("c1", "docker:index/container:Container", "test1", "create", 2.0, 7.4),
        S("c2", "docker:index/container:Container", "test2", "create", 2.5, 7.5),  # ends 10.0
        S("validate", t, "validate-run", "create", 1.0, 10.1),
        S("stack", "pulumi:pulumi:Stack", "bench", "same", 0.0, 0.0),
    ]
    records = [
        R("etcd1", [], parent="stack"),
        R("etcd2", [], parent="stack"),
        R("image", []),
        R("gate", ["etcd1", "etcd2"]),
        R("dockerd1", ["gate"]),
        R("dockerd2", ["gate", "dockerd1"]),
        R("net", ["dockerd1", "dockerd2"], provider="prov::id"),
        R("c1", ["net", "image"]),
        R("c2", ["net", "image"]),
        R("validate", ["c1", "c2"]),
    ]
    return steps, edges(records)


def test_edges_count_dependencies_parent_and_provider_without_its_id() -> None:
    got = edges([R("a", ["b", "c"], parent="p", provider="urn:prov::1234"), R("b", ["b"])])
    assert got == {"a": {"b", "c", "p", "urn:prov"}, "b": set()}


def test_the_critical_path_follows_the_dependency_that_ended_last() -> None:
    steps, deps = _lab()
    path = critical_path(steps, deps)
    assert [k.name for k in path] == [
        "etcd2",
        "gate",
        "dockerd1",
        "dockerd2",
        "demo",
        "test2",
        "validate-run",
    ]
    waits = [round(k.wait, 2) for k in path]
    assert waits == [0.5, 0.2, 0.0, 0.2, 0.0, 0.1, 0.1]
    assert path[-1].ended == pytest.approx(11.1)
    lines = path_lines(path, wall=11.6)
    assert "gate" in lines[2] and "0.20s" in lines[2]
    assert lines[-1].startswith("  7 steps, 10.00s in steps, 1.10s waiting")
    assert "after its last step 0.50s to the up's end" in lines[-1]


def test_the_critical_path_of_nothing_is_empty_and_a_cycle_ends() -> None:
    assert critical_path([], {}) == []
    a = S("a", "t", "a", "create", 1.0, 0.0)
    b = S("b", "t", "b", "create", 1.0, 1.0)
    path = critical_path([a, b], {"a": {"b"}, "b": {"a"}})
    assert [k.name for k in path] == ["a", "b"]


def test_the_critical_path_of_the_programs_evaluation_is_a_chain_of_its_edges() -> None:
    """On a real run of the program under mocks (nothing touched): each link of the path is a
    dependency of the next, and the last is the step that ended last."""
    from bench.bench_lab import bench_config
    from standin import run_program

    run = run_program(bench_config(2), stack="bench", perform=False)
    assert run.error is None
    deps = edges(run.engine.records)
    path = critical_path(run.steps, deps)
    by_name = {s.name: s for s in run.steps if s.kind != "same"}
    assert len(path) >= 3
    last = max(by_name.values(), key=lambda s: s.started + s.seconds)
    assert path[-1].name == last.name
    urn = {s.name: s.urn for s in run.steps}
    for a, b in itertools.pairwise(path):
        assert urn[a.name] in deps[urn[b.name]], (a.name, b.name)
        assert b.wait == pytest.approx(max(0.0, b.started - a.ended))


def _proc(root: Path, pid: int, comm: str, ppid: int, u: int, s: int, cu: int, cs: int) -> None:
    d = root / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    rest = [ppid, 1, 1, 0, -1, 4194304, 0, 0, 0, 0, u, s, cu, cs, 20, 0, 1, 0, 100]
    (d / "stat").write_text(f"{pid} ({comm}) S " + " ".join(map(str, rest)) + "\n")


def test_tree_ticks_sum_a_process_its_descendants_and_their_reaped_children(
    tmp_path: Path,
) -> None:
    _proc(tmp_path, 100, "python", 1, 10, 5, 3, 2)  # 20
    _proc(tmp_path, 101, "etcd", 100, 40, 10, 0, 0)  # 50
    _proc(tmp_path, 102, "containerd) shim (x", 101, 7, 3, 0, 0)  # 10, a comm with parens
    _proc(tmp_path, 200, "other lab", 1, 900, 900, 0, 0)  # not ours
    (tmp_path / "self").mkdir()
    assert tree_ticks(100, tmp_path) == 80
    assert tree_ticks(101, tmp_path) == 60
    assert tree_ticks(999, tmp_path) == 0


def test_machine_ticks_count_idle_and_iowait_as_not_busy(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8\n")
    assert machine_ticks(tmp_path) == (150, 1000)


def test_the_cpu_meter_gives_the_floor_as_cpu_over_cores(tmp_path: Path) -> None:
    hz = os.sysconf("SC_CLK_TCK")
    _proc(tmp_path, 100, "python", 1, 0, 0, 0, 0)
    (tmp_path / "stat").write_text("cpu  0 0 0 0 0 0 0 0\n")
    meter = CpuMeter(proc=tmp_path, pid=100, cores=2)
    meter.start()
    _proc(tmp_path, 100, "python", 1, hz, 0, 2 * hz, hz)  # 4 s
    _proc(tmp_path, 101, "dockerd", 100, 2 * hz, 0, 0, 0)  # 2 s, started meanwhile
    (tmp_path / "stat").write_text(f"cpu  {3 * hz} 0 0 {hz} 0 0 0 0\n")
    cpu = meter.stop()
    assert cpu.seconds == pytest.approx(6.0)
    assert cpu.floor == pytest.approx(3.0)
    assert cpu.machine_busy == pytest.approx(0.75)
    assert "CPU 6.00s of the lab's processes on 2 cores: floor 3.00s" in cpu.line()
    assert "the machine 75% busy" in cpu.line()


def test_the_cpu_meter_counts_a_reaped_childs_cpu_on_this_machine() -> None:
    meter = CpuMeter()
    meter.start()
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"
    subprocess.run([sys.executable, "-c", burn], check=True)
    cpu = meter.stop()
    assert cpu.seconds >= 0.35
    assert cpu.wall >= 0.35
    assert cpu.machine_busy is not None and 0.0 < cpu.machine_busy <= 1.0


def _size(n: int, script_up: float, program_up: float, fails: int = 0) -> Size:
    s = Size(n)
    steps, deps = _lab()
    for i in (1, 2, 3):
        why = "up: timed out" if i <= fails else ""
        s.rounds.append(
            Round(
                "script",
                i,
                up=script_up + i * 0.1,
                down=2.0,
                why=why,
                cpu=Cpu(4.0, script_up, 2, 0.9),
            )
        )
        s.rounds.append(
            Round(
                "program",
                i,
                up=program_up + i * 0.1,
                down=1.5,
                steps=list(steps),
                deps=deps,
                cpu=Cpu(2.0 * i, program_up, 2, 0.8),
            )
        )
    return s


def test_the_table_gives_the_scripts_failure_rate_and_the_floor() -> None:
    rows = table([_size(2, 3.0, 2.0), _size(8, 9.0, 8.0, fails=1)])
    assert "script failure rate" in rows[0] and "program up floor" in rows[0]
    assert len(rows[0].split("|")) == len(rows[2].split("|"))
    assert "| 0/3 (0%) |" in rows[2]
    assert "| 2/3, 3/3 | 1/3 (33%) |" in rows[3]
    assert "| 2.00 s |" in rows[3]  # the median floor: 4 s of CPU over 2 cores


def test_the_critical_report_prints_the_median_rounds_path_and_floor() -> None:
    lines = critical_report(_size(2, 3.0, 10.0))
    assert lines[0] == "  2 hosts, program round 2 (up 10.20s, passed):"
    assert any("validate-run" in x for x in lines)
    assert any("floor: wall 10.00s; CPU 4.00s" in x for x in lines)
    assert any("the script's up (median round)" in x for x in lines)
    assert critical_report(Size(4)) == ["  4 hosts: no program up to read"]


def _target(rows: list[str], what: str) -> list[str]:
    hit = [r for r in rows if what in r]
    assert len(hit) == 1, (what, rows)
    return [c.strip() for c in hit[0].split("|")[1:-1]]


def test_the_16_host_target_appears_when_8_and_16_hosts_were_measured() -> None:
    two, eight = _size(2, 3.0, 2.0), _size(8, 9.0, 8.0)
    rows = targets([two, eight], [], None)
    assert not [r for r in rows if "16-host" in r or "16 hosts" in r]
    sixteen = _size(16, 21.0, 16.0)  # 16.2 / 8.2 = 1.98; 16.2 / 21.2 = 0.76
    rows = targets([two, eight, sixteen], [], None)
    row = _target(rows, "16-host up <= 2.2x the 8-host up")
    assert row[1:3] == ["1.98", "met"]
    assert _target(rows, "program up <= 0.8x script up, 16 hosts")[2] == "met"
    slow = _size(16, 20.0, 19.0)  # 19.2 / 8.2 = 2.34
    assert _target(targets([eight, slow], [], None), "16-host")[1:3] == ["2.34", "missed"]
    # the floor beside the up target: the program's median floor (2 s) over the script's up
    floor = _target(rows, "up <= 0.8x script up, 2 hosts")[3]
    assert floor == (
        f"{2.0 / 3.2:.2f} (CPU / cores over the script's up);"
        f" {2.2 / 3.1:.2f} against the script's fastest round"
    )


def test_the_scripts_phases_are_read_from_its_own_phase_function() -> None:
    """The lines the real script's ``phase`` prints (its function run in bash), parsed back;
    a failed up's reason is its own message, never a phase line."""
    script = Path(__file__).resolve().parents[2] / "bench" / "seed_baseline.sh"
    text = script.read_text()
    body = text[text.index("T0=") : text.index(">&2; }", text.index("phase()")) + len(">&2; }")]
    run = subprocess.run(
        ["bash", "-c", body + '\nphase "members healthy"; sleep 0.3; phase "first ping"'],
        capture_output=True,
        text=True,
        check=True,
    )
    got = phases(run.stderr + "seed_baseline phase: broken x\n")
    assert list(got) == ["members healthy", "first ping"], run.stderr
    assert 0.0 <= got["members healthy"] < 0.2
    assert 0.3 <= got["first ping"] - got["members healthy"] < 2.0
    res = subprocess.CompletedProcess(
        [], 1, "", run.stderr + "seed_baseline: t1 pinging t2 did not happen in 60s\n"
    )
    assert _why(res) == "seed_baseline: t1 pinging t2 did not happen in 60s"


def test_the_phase_report_gives_each_script_rounds_phases() -> None:
    s = _size(8, 9.0, 8.0, fails=1)
    s.rounds[2].phases = {"members healthy": 7.31, "first ping": 15.69}
    lines = phase_report(s)
    assert lines[0] == "  8 hosts, script round 1 (up 9.10s, FAILED): none"
    assert lines[1] == (
        "  8 hosts, script round 2 (up 9.20s, passed): members healthy 7.31, first ping 15.69"
    )
    assert len(lines) == 3  # the script's rounds only
    assert s.best_up_ratio() == pytest.approx(8.2 / 9.2)


def test_hosts_16_and_the_data_plane_arguments_are_checked() -> None:
    assert bad_args([2, 8, 16], 5) == ""
    assert "--hosts" in bad_args([1, 8], 5)
    assert bad_args([2], 1, streams=0) == "--streams and --iperf-runs must be at least 1"
    assert bad_args([2], 1, cpus=[0, 2], cores=2) == (
        "--iperf-cpus: this machine's CPUs are 0 to 1; got 0 2"
    )
    assert bad_args([2], 1, cpus=[0, 1], cores=2) == ""


def test_runs_are_interleaved_underlay_overlay() -> None:
    assert schedule(3) == ["underlay", "overlay"] * 3


def test_the_data_plane_reports_medians_spreads_and_the_verdicts() -> None:
    g = 1e9
    p1500 = Dataplane(1500, underlay=[16 * g, 10 * g, 15 * g], overlay=[13 * g, 8 * g, 12 * g])
    p9000 = Dataplane(9000, underlay=[15 * g, 14 * g, 16 * g], overlay=[14 * g, 13 * g, 15 * g])
    p1500.container_mtu, p1500.machine_busy = 1450, 0.42
    assert p1500.ratio() == pytest.approx(12 / 15)
    assert p1500.ratios() == pytest.approx([13 / 16, 0.8, 0.8])
    sp = spread(p1500.underlay)
    assert sp is not None and (sp.median, sp.low, sp.high) == (15 * g, 10 * g, 16 * g)
    assert sp.relative == pytest.approx(6 / 15)
    assert spread([]) is None
    rows = dataplane_table([p1500])
    assert "| 1500 | 1450 | 15.0 Gbit/s (10.0-16.0, 40%) | 12.0 Gbit/s (8.0-13.0, 42%)" in rows[2]
    assert "| 0.80 | 0.80 (0.80-0.81, 2%) | 3 | 1 | 42% | none |" in rows[2]
    got = targets([], [p1500, p9000], None)
    assert _target(got, "underlay MTU 1500, >= 0.78")[1:] == ["0.80", "met", "pairs 0.80-0.81"]
    assert _target(got, "underlay MTU 9000, >= 0.90")[1:3] == ["0.93", "met"]
    p9000.overlay = [12 * g, 11 * g, 13 * g]
    assert _target(targets([], [p9000], None), "9000")[2] == "missed"
    assert _target(targets([], [Dataplane(1500)], None), "1500")[2] == "not measured"


def test_the_data_plane_says_where_iperf_runs_and_the_offloads() -> None:
    p = Dataplane(1500, where=Placement(4, (0, 1)))
    p.offloads = [
        Offloads("h1 eth0 (underlay veth)", "ethtool -k", {"tso": "on", "gro": "off"}),
        Offloads("h1 vxlan0 (VXLAN)", "ip -d link", {}, "Cannot find device"),
    ]
    lines = dataplane_notes([p])
    assert (
        "4 TCP streams (-P)" in lines[0] and "client pinned to CPU 0, server to CPU 1" in lines[0]
    )
    assert "interleaved u, o, u, o" in lines[0]
    assert lines[1] == "    h1 eth0 (underlay veth): tso on, gro off [ethtool -k]"
    assert lines[2] == "    h1 vxlan0 (VXLAN): Cannot find device [ip -d link]"
    assert "1 TCP stream (-P); not pinned" in Placement().describe()


def test_iperf_arguments_carry_streams_and_pinning() -> None:
    server, client = iperf_argv("10.0.0.3", 4, Placement())
    assert "-P" not in client and "-A" not in client and "-A" not in server
    server, client = iperf_argv("10.0.0.3", 4, Placement(4, (1, 0)))
    assert client[-4:] == ["-P", "4", "-A", "1"] and server[-2:] == ["-A", "0"]
    assert client[:7] == ["iperf3", "-J", "-c", "10.0.0.3", "-p", "5201", "-t"]


def test_iperf_results_are_read_or_refused_in_one_line() -> None:
    ok = '{"end": {"sum_received": {"bits_per_second": 1.5e10}}}'
    assert iperf_result(ok, 0, "", "10.0.0.3") == 1.5e10
    with pytest.raises(MeasureError, match=r"iperf3 to 10\.0\.0\.3 failed: unable to connect"):
        iperf_result('{"error": "unable to connect"}', 1, "", "10.0.0.3")
    with pytest.raises(MeasureError, match=r"no end\.sum_received"):
        iperf_result('{"end": {}}', 0, "", "10.0.0.3")
    with pytest.raises(MeasureError, match="not JSON"):
        iperf_result("garbage", 0, "", "10.0.0.3")


def test_offload_settings_are_parsed_from_ethtool_or_ip() -> None:
    text = """Features for eth0:
rx-checksumming: on
tx-checksumming: on
	tx-checksum-ip-generic: on
scatter-gather: on
tcp-segmentation-offload: on
generic-segmentation-offload: on
generic-receive-offload: off
rx-gro-list: off
rx-udp-gro-forwarding: off [fixed]
tx-udp_tnl-segmentation: on
large-receive-offload: off [fixed]
"""
    assert parse_ethtool_k(text) == {
        "rx-csum": "on",
        "tx-csum": "on",
        "sg": "on",
        "tso": "on",
        "gso": "on",
        "gro": "off",
        "gro-list": "off",
        "udp-gro-fwd": "off (fixed)",
        "tnl-gso": "on",
    }
    ip = '[{"ifname": "eth0", "gso_max_size": 65536, "gso_max_segs": 65535, "gro_max_size": 65536}]'
    assert parse_ip_details(ip) == {
        "gso_max_size": "65536",
        "gso_max_segs": "65535",
        "gro_max_size": "65536",
    }
    assert parse_ip_details("") == {} and parse_ip_details("nope") == {}


def test_the_command_line_takes_16_hosts_and_the_new_flags_and_keeps_the_old() -> None:
    from bench.bench_lab import arguments

    args = arguments(["--hosts", "2", "8", "16", "--rounds", "5"])
    assert args.hosts == [2, 8, 16] and args.rounds == 5
    assert args.streams == 1 and args.iperf_cpus is None and args.dataplane_mtu == [1500, 9000]
    old = arguments(
        [
            "--validator-runs",
            "2",
            "--dataplane-mtu",
            "--iperf-seconds",
            "3",
            "--iperf-runs",
            "7",
            "--timeline",
            "--plot",
            "x.png",
        ]
    )
    got = (old.validator_runs, old.dataplane_mtu, old.iperf_seconds, old.iperf_runs)
    assert got == (2, [], 3, 7)
    assert old.timeline and str(old.plot) == "x.png"
    new = arguments(["--streams", "4", "--iperf-cpus", "0", "1"])
    assert new.streams == 4 and new.iperf_cpus == [0, 1]


def test_a_bad_command_line_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.bench_lab import arguments

    with pytest.raises(SystemExit) as e:
        arguments(["--streams", "0"])
    assert e.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .endswith("error: --streams and --iperf-runs must be at least 1")
    )


def test_the_cpu_is_split_by_kind_of_process(tmp_path: Path) -> None:
    hz = os.sysconf("SC_CLK_TCK")

    def proc(pid: int, comm: str, ppid: int, own: int, reaped: int, cmd: str) -> None:
        _proc(tmp_path, pid, comm, ppid, own, 0, reaped, 0)
        (tmp_path / str(pid) / "cmdline").write_bytes(cmd.replace(" ", "\0").encode())

    proc(100, "python", 1, 0, 0, "python -m bench.bench_lab")
    proc(101, "dockerd", 100, hz, 0, "dockerd --data-root x")
    (tmp_path / "stat").write_text("cpu  0 0 0 0 0 0 0 0\n")
    meter = CpuMeter(proc=tmp_path, pid=100, cores=2)
    meter.start()
    proc(100, "python", 1, hz, 3 * hz, "python -m bench.bench_lab")  # 1 s own, 3 s reaped
    proc(101, "dockerd", 100, 3 * hz, 0, "dockerd --data-root x")  # 2 s more
    proc(102, "python3", 100, 2 * hz, 0, "python3 -m overlaylab.hostops names-keep --x")
    proc(103, "python3", 100, hz, 0, "python3 -m overlaylab.hostops docker-up")
    proc(104, "containerd-shim", 101, hz, 0, "/usr/bin/containerd-shim-runc-v2 -id 1")
    (tmp_path / "stat").write_text(f"cpu  {9 * hz} 0 0 {hz} 0 0 0 0\n")
    cpu = meter.stop()
    assert dict(cpu.by) == {
        "reaped by this process (engine and program)": 3.0,
        "dockerd": 2.0,
        "names keepers": 2.0,
        "this process (engine and program)": 1.0,
        "hostops verbs": 1.0,
        "containerd-shims": 1.0,
    }
    assert sum(dict(cpu.by).values()) == pytest.approx(cpu.seconds)
    assert cpu.by[0] == ("reaped by this process (engine and program)", 3.0)
    assert "; by kind: reaped by this process (engine and program) 3.0s, dockerd 2.0s" in cpu.line()


def test_a_script_that_timed_out_keeps_the_phases_it_reached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round the benchmark kills at its timeout (the serf partition: the ping never comes)
    still says how far it got."""
    import bench.bench_lab as bl

    fake = tmp_path / "seed.sh"
    fake.write_text("echo 'seed_baseline phase: containers running 6.10' >&2\nexec sleep 30\n")
    monkeypatch.setattr(bl, "SCRIPT", fake)
    monkeypatch.setattr(bl, "SCRIPT_TIMEOUT", 0.5)
    res = bl._script("up", 8)
    assert res.returncode == 124
    assert _why(res) == "timed out after 0.5s"
    assert phases(res.stderr) == {"containers running": 6.1}
