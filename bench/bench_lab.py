"""Benchmark: nothing -> validated lab -> nothing, for 2 and 4 hosts (root; not a test).

For each size it measures, in the same run on the same machine:
- baseline: the seed's steps scripted by hand, one host after another (the same host
  operations the program uses, called sequentially), up to the first cross-host ping, then
  torn down host by host;
- program: ``__main__.py`` through the engine stand-in (independent hosts in parallel), up to a
  *validated* lab (every check of the validator, which is more than one ping), then destroy;
- the validator's own time, run once more by itself on the running lab.

Machines here are noisy: read the ratios, not the absolute seconds.

    sudo venv/bin/python -m bench.bench_lab [--hosts 2 4] [--rounds 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from overlaylab.config import LabConfig, parse  # noqa: E402
from overlaylab.hosts import etcdcheck, image, netns, netns_daemons, proc  # noqa: E402
from overlaylab.spec import OUT_VALIDATION_SPEC  # noqa: E402
from overlaylab.validate import validate  # noqa: E402
from tests.labtools import lab_config, leftovers  # noqa: E402
from tests.standin import become_subreaper, destroy, run_program  # noqa: E402

SEGMENT = "192.168.214"


def bench_config(hosts: int, lab_id: str) -> dict[str, Any]:
    # its own segment and lab id: the benchmark can run beside a local stack or the tests
    return lab_config(hosts=hosts, lab_id=lab_id, segment=SEGMENT)


def baseline(cfg: LabConfig) -> tuple[float, float]:
    """The hand-run lab, host after host. Returns (up to first ping, down) in seconds."""
    import docker

    t0 = time.monotonic()
    netns.bridge_up(cfg.local_bridge, cfg.bridge_address, cfg.prefixlen)
    for h in cfg.hosts:
        netns.host_up(
            h.netns(cfg.lab_id),
            h.name,
            h.veth(cfg.lab_id),
            h.address,
            cfg.prefixlen,
            cfg.local_bridge,
        )
    for h in cfg.hosts:
        netns_daemons.etcd_up(
            netns=h.netns(cfg.lab_id),
            name=h.name,
            address=h.address,
            client_port=cfg.etcd_client_port,
            peer_port=cfg.etcd_peer_port,
            token=cfg.etcd_token,
            initial_cluster=cfg.initial_cluster(),
            host_dir=cfg.host_dir(h),
            bridge=cfg.local_bridge,
        )
    etcdcheck.etcd_health(
        endpoints=[cfg.client_url(h) for h in cfg.hosts],
        names=[h.name for h in cfg.hosts],
        bridge=cfg.local_bridge,
        timeout=60,
    )
    for h in cfg.hosts:
        netns_daemons.docker_up(
            netns=h.netns(cfg.lab_id),
            hostname=h.name,
            host_dir=cfg.host_dir(h),
            cluster_store=cfg.cluster_store(h),
            advertise=cfg.advertise(h),
            etcd_endpoint=cfg.client_url(h),
            lab_id=cfg.lab_id,
            bridge=cfg.local_bridge,
        )
        image.image_import(hostname=h.name, socket_path=cfg.docker_socket(h), image=cfg.image)
    clients = {
        h.name: docker.DockerClient(base_url=f"unix://{cfg.docker_socket(h)}", version="1.41")
        for h in cfg.hosts
    }
    first = clients[cfg.hosts[0].name]
    ipam = docker.types.IPAMConfig(
        pool_configs=[docker.types.IPAMPool(subnet=str(cfg.subnet), gateway=cfg.gateway)]
    )
    first.networks.create(cfg.network_name, driver="overlay", ipam=ipam)
    for c in cfg.containers:
        clients[c.host].containers.run(
            cfg.image,
            ["sh", "-c", "while true; do sleep 3600; done"],
            name=c.name,
            network=cfg.network_name,
            detach=True,
        )
    a, b = cfg.containers[0], cfg.containers[1]
    res = clients[a.host].containers.get(a.name).exec_run(["ping", "-c", "1", "-W", "2", b.name])
    if res.exit_code != 0:
        raise SystemExit(f"baseline lab does not ping: {res.output.decode()}")
    up = time.monotonic() - t0

    t1 = time.monotonic()
    for c in cfg.containers:
        clients[c.host].containers.get(c.name).remove(force=True)
    first.networks.get(cfg.network_name).remove()
    for h in cfg.hosts:
        netns_daemons.docker_down(
            hostname=h.name,
            host_dir=cfg.host_dir(h),
            advertise=cfg.advertise(h),
            etcd_endpoint=cfg.client_url(h),
            lab_id=cfg.lab_id,
            bridge=cfg.local_bridge,
        )
    for h in cfg.hosts:
        netns_daemons.etcd_down(name=h.name, host_dir=cfg.host_dir(h))
    for h in cfg.hosts:
        netns.host_down(h.netns(cfg.lab_id), h.veth(cfg.lab_id))
    netns.bridge_down(cfg.local_bridge)
    return up, time.monotonic() - t1


def program(raw: dict[str, Any]) -> tuple[float, float, float, float]:
    """(up to a validated lab, validator inside up, validator alone, destroy) in seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        run = run_program(raw, stack="bench", state_file=Path(tmp) / "bench.json")
        try:
            if run.error is not None:
                raise SystemExit(f"program up failed: {run.error}")
            step = next(r.seconds for r in run.engine.records if r.name == "validate-run")
            t0 = time.monotonic()
            results = validate((run.outputs or {})[OUT_VALIDATION_SPEC], timeout=30)
            alone = time.monotonic() - t0
            if not all(r.ok for r in results):
                raise SystemExit("validator failed on the benchmark lab")
        finally:
            t1 = time.monotonic()
            errors = destroy(run.engine.records)
            down = time.monotonic() - t1
        if errors:
            raise SystemExit(f"destroy failed: {errors}")
        return run.seconds, step, alone, down


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hosts", type=int, nargs="+", default=[2, 4])
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    netns.preflight()
    become_subreaper()
    proc.set_quiet()  # keep the table readable
    rows = []
    for n in args.hosts:
        raw = bench_config(n, "bench")
        cfg = parse(raw)
        if leftovers(cfg):
            raise SystemExit(f"a previous run left {leftovers(cfg)}")
        samples: list[tuple[float, ...]] = []
        for _ in range(args.rounds):
            b_up, b_down = baseline(cfg)
            samples.append((b_up, b_down, *program(raw)))
        b_up, b_down, p_up, step, alone, p_down = (
            statistics.median(c) for c in zip(*samples, strict=True)
        )
        rows.append((n, b_up, p_up, step, alone, b_down, p_down))
        if leftovers(cfg):
            raise SystemExit(f"benchmark left {leftovers(cfg)}")
    print()
    print(
        "hosts | baseline up (hand steps, serial, to 1st ping) | program up (parallel, validated)"
        " | ratio | validator in up | validator alone | baseline down | program down | ratio"
    )
    print("---|---|---|---|---|---|---|---|---")
    for n, b_up, p_up, step, alone, b_down, p_down in rows:
        print(
            f"{n} | {b_up:.1f} s | {p_up:.1f} s | {p_up / b_up:.2f} | {step:.1f} s | {alone:.1f} s"
            f" | {b_down:.1f} s | {p_down:.1f} s | {p_down / b_down:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
