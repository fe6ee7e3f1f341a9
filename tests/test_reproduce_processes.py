"""The reproduce runner never orphans its runs, never shares a folder with a second live runner, and
resolves ``--out`` once (runs land under it from any working directory)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reproduce.experiments import Spec, check_plan, execute, run_dir
from rundir.ownership import RunDirError, RunLock

SLEEPY_CLI = """
import os, pathlib, sys, time
pathlib.Path({pids!r}).joinpath(str(os.getpid())).write_text("")
time.sleep(120)
"""

RUNNER = """
import sys
from reproduce.experiments import Spec, execute
cli = [sys.executable, {script!r}]
execute([Spec("s1", "simulate", ("--steps", "2")), Spec("s2", "simulate", ("--steps", "3"))],
        {out!r}, jobs=2, progress=False, cli=cli)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its new parent) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _start_runner(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    script = tmp_path / "sleepy.py"
    script.write_text(SLEEPY_CLI.format(pids=str(pids)))
    runner = subprocess.Popen([sys.executable, "-c",
                               RUNNER.format(script=str(script), out=str(tmp_path / "out"))])
    deadline = time.monotonic() + 60
    while len(list(pids.iterdir())) < 2:
        assert time.monotonic() < deadline, "the runs never started"
        assert runner.poll() is None, "the runner died"
        time.sleep(0.05)
    return runner, [int(p.name) for p in pids.iterdir()]


def _wait_gone(pids, timeout=15.0):
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killing_the_runner_kills_its_runs(tmp_path, sig):
    runner, children = _start_runner(tmp_path)
    try:
        runner.send_signal(sig)
        runner.wait(30)
        assert _wait_gone(children) == []
    finally:
        for p in children:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        if runner.poll() is None:
            runner.kill()


def test_second_runner_on_the_same_folder_is_refused(tmp_path):
    with RunLock(tmp_path / "out"):
        with pytest.raises(RunDirError, match="in use by another live run"):
            execute([Spec("s1", "simulate", ())], tmp_path / "out", jobs=1, progress=False,
                    cli=[sys.executable, "-c", "pass"])


def test_relative_out_is_resolved_against_the_callers_folder(tmp_path, monkeypatch):
    specs = [Spec("s1", "simulate", ())]
    script = tmp_path / "ok.py"
    script.write_text("import sys; print(sys.argv)\n")
    monkeypatch.chdir(tmp_path)
    res = execute(specs, "rel-out", jobs=1, progress=False, cli=[sys.executable, str(script)])
    expected = run_dir(specs[0], tmp_path / "rel-out", check_plan(specs))
    assert res[0]["ok"] and Path(res[0]["dir"]) == expected
    assert str(expected) in (expected / "log.txt").read_text()  # the child was told the absolute folder
