"""The cluster's identity: the first run records it, a rerun with it unchanged passes, and a
new token or port is refused in one line before any member is touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from overlaylab.errors import EtcdError
from overlaylab.membership import cluster_identity

PROJECT = Path(__file__).resolve().parents[2]


def test_first_run_and_unchanged_rerun_pass() -> None:
    first = cluster_identity("t", 2379, 2380, "")
    assert json.loads(first) == {"token": "t", "clientPort": 2379, "peerPort": 2380}
    assert cluster_identity("t", 2379, 2380, first) == first


@pytest.mark.parametrize(
    ("token", "client", "peer", "named"),
    [("u", 2379, 2380, "etcd.clusterToken 't' -> 'u'"),
     ("t", 2479, 2380, "etcd.clientPort 2379 -> 2479"),
     ("t", 2379, 2480, "etcd.peerPort 2380 -> 2480")],
)  # fmt: skip
def test_a_new_token_or_port_is_refused(token: str, client: int, peer: int, named: str) -> None:
    before = cluster_identity("t", 2379, 2380, "")
    with pytest.raises(EtcdError, match="that is a new etcd cluster") as e:
        cluster_identity(token, client, peer, before)
    assert str(e.value).startswith(named)
    # and it says how to rebuild instead
    assert "set etcd.generation to 2 to rebuild" in str(e.value)


def test_the_verb_reads_the_previous_stdout_as_pulumi_command_passes_it() -> None:
    argv = [sys.executable, "-m", "overlaylab.hostops", "etcd-identity", "--token", "new",
            "--client-port", "2379", "--peer-port", "2380"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(PROJECT),
           "PULUMI_COMMAND_STDOUT": cluster_identity("old", 2379, 2380, "")}  # fmt: skip
    res = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert res.returncode != 0 and "etcd.clusterToken 'old' -> 'new'" in res.stderr
    assert res.stderr.count("\n") == 1, res.stderr
