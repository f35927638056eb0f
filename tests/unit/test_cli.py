"""The stand-in's command line as a new user meets it: bad input answers in one line, exit 2,
and changes nothing; the Pulumi CLI's verbs are there."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]


def standin(*argv: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    prefix = [] if user is None else ["setpriv", f"--reuid={user}", f"--regid={user}",
                                      "--clear-groups"]  # fmt: skip
    return subprocess.run(
        [*prefix, sys.executable, "-m", "standin", *argv],
        capture_output=True,
        text=True,
        check=False,
        cwd=PROJECT,
        timeout=120,
    )


def one_line_error(res: subprocess.CompletedProcess[str], *words: str) -> str:
    assert res.returncode == 2, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def stack_file() -> Iterator[tuple[str, Path]]:
    """A stack file of a name no one else uses, removed after the test."""
    name = f"t{uuid.uuid4().hex[:8]}"
    path = PROJECT / "stacks" / f"Pulumi.{name}.yaml"
    yield name, path
    path.unlink(missing_ok=True)


def test_a_stack_that_does_not_exist_names_the_stacks_there(tmp_path: Path) -> None:
    res = standin("preview", "--stack", "nope", "--state-dir", str(tmp_path))
    one_line_error(res, "no stack 'nope'", "stacks/Pulumi.nope.yaml", "local")
    assert list(tmp_path.iterdir()) == []


def test_a_malformed_stack_file_says_where(stack_file: tuple[str, Path], tmp_path: Path) -> None:
    name, path = stack_file
    path.write_text("config:\n  overlay-etcd:lab: {id: x\n")
    res = standin("up", "--stack", name, "--state-dir", str(tmp_path))
    one_line_error(res, "is not valid YAML at line 3", f"Pulumi.{name}.yaml")
    assert list(tmp_path.iterdir()) == []


def test_a_misspelt_key_is_named_with_the_closest_valid_one(
    stack_file: tuple[str, Path], tmp_path: Path
) -> None:
    name, path = stack_file
    path.write_text(
        (PROJECT / "stacks" / "Pulumi.local.yaml").read_text() + "  overlay-etcd:hsts: []\n"
    )
    res = standin("preview", "--stack", name, "--state-dir", str(tmp_path))
    one_line_error(res, "overlay-etcd:hsts is not a key", "did you mean overlay-etcd:hosts?")


def test_a_local_up_as_a_user_says_run_as_root(tmp_path: Path) -> None:
    user = None if os.geteuid() != 0 else 65534  # root: drop to nobody for this run
    res = standin("up", "--stack", "local", "--state-dir", str(tmp_path), user=user)
    one_line_error(res, "run it as root")
    assert list(tmp_path.iterdir()) == []


def test_stack_output_without_a_stack_up_says_so(tmp_path: Path) -> None:
    one_line_error(standin("stack", "output", "--state-dir", str(tmp_path)), "no outputs")
    one_line_error(standin("stack", "outputs", "--state-dir", str(tmp_path)), "stack output")


def test_destroy_is_a_verb_and_down_its_alias() -> None:
    helptext = standin("--help").stdout
    for verb in ("up", "preview", "destroy", "down", "refresh", "stack"):
        assert verb in helptext.split("{", 1)[1].split("}", 1)[0], helptext


def test_stack_output_prints_the_last_ups_outputs(tmp_path: Path) -> None:
    from standin import state

    state.save(tmp_path / "local.json", [])
    state.save_outputs(tmp_path / "local.json", {"networkId": "abc", "dockerHosts": {"n": "x"}})
    res = standin("stack", "output", "networkId", "--state-dir", str(tmp_path))
    assert (res.returncode, res.stdout) == (0, "abc\n"), res
    res = standin("stack", "output", "--json", "--state-dir", str(tmp_path))
    assert res.returncode == 0 and '"dockerHosts"' in res.stdout, res
    one_line_error(standin("stack", "output", "x", "--state-dir", str(tmp_path)), "no output 'x'")


@pytest.mark.parametrize("delay", [0.1, 0.2, 0.4, 0.8])
def test_a_sigint_while_the_cli_still_loads_ends_it_with_one_line_and_no_traceback(
    tmp_path: Path, delay: float
) -> None:
    """Found by the interruption loop (bench/interrupts.py, seed 20261202, round 10, on a busy
    machine): a SIGINT before the CLI had installed its handler, during its imports, ended the
    run with a KeyboardInterrupt traceback. At any moment the first SIGINT is the Pulumi CLI's:
    one line, no traceback. The delays fall in the imports (about 0.5 s of them here) and
    after."""
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "standin", "preview", "--stack", "local",
         "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT,
    )  # fmt: skip
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in out + err, err[-3000:]
    # interrupted with its line; or done before the signal; or killed by it before Python had
    # run a line of the CLI (nothing started, nothing to say)
    before_python = proc.returncode == -signal.SIGINT and not err
    # or killed by it once the CLI had printed its summary: Python's finalization gives SIGINT
    # back its default action, so a signal in the last moments of the exit ends the process
    # (a preview takes about 0.4 s here; found when previews got faster)
    after_done = proc.returncode == -signal.SIGINT and "Resources:" in out
    assert "interrupted" in err or proc.returncode == 0 or before_python or after_done, (
        proc.returncode,
        err,
        out[-500:],
    )
