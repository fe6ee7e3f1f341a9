"""rundir: run-folder ownership (claim, lock, config changes), the one JSONL reader, finished runs."""

import json
import signal
import subprocess
import sys

import pytest

from rundir.finished import has_records, is_finished, mark_finished, read_done
from rundir.records import read_records
from rundir.ownership import RunDirError, RunLock, claim_run_dir, config_changes

HOLD_LOCK = """
import sys, time
from rundir.ownership import RunLock
lock = RunLock(sys.argv[1]).acquire()  # held while referenced
print("locked", flush=True)
time.sleep(60)
"""


def _holder(run_dir):
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_claim_fresh_folder_then_refuse_without_resume_or_overwrite(tmp_path):
    d = tmp_path / "run"
    with claim_run_dir(d):
        (d / "config.json").write_text("{}")
        (d / "metrics.jsonl").write_text("")
    with pytest.raises(RunDirError, match="--resume.*--overwrite"):
        claim_run_dir(d)
    with claim_run_dir(d, resume=True):
        assert (d / "metrics.jsonl").exists()
    with claim_run_dir(d, overwrite=True):
        assert sorted(p.name for p in d.iterdir()) == [".lock"]
    with pytest.raises(RunDirError, match="exclude"):
        claim_run_dir(d, resume=True, overwrite=True)


def test_claim_keeps_unrelated_files_and_refuses_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    claim_run_dir(tmp_path).release()
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(RunDirError, match="is a file"):
        claim_run_dir(tmp_path / "notes.txt")


def test_second_live_writer_is_refused_and_a_killed_one_releases(tmp_path):
    d = tmp_path / "run"
    proc = _holder(d)
    try:
        with pytest.raises(RunDirError, match=f"pid {proc.pid}"):
            claim_run_dir(d, resume=True)
        with pytest.raises(RunDirError, match="in use"):
            claim_run_dir(d, overwrite=True)  # overwrite never clears a live run's folder
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    lock = claim_run_dir(d, resume=True)  # the kernel dropped the dead holder's lock
    assert lock.held
    lock.release()
    assert not lock.held


def test_lock_is_reentrant_as_context_only_once(tmp_path):
    lock = RunLock(tmp_path)
    with lock:
        with pytest.raises(RunDirError):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path):
        pass


def test_config_changes_names_each_setting():
    saved = {"steps": 10, "optim": {"lr": 1e-3, "betas": [0.9, 0.99]}, "task": "arithmetic"}
    new = {"steps": 20, "optim": {"lr": 1e-4, "betas": (0.9, 0.99)}, "task": "arithmetic"}
    assert config_changes(saved, new) == ["optim.lr: 0.001 -> 0.0001", "steps: 10 -> 20"]
    assert config_changes(saved, new, ignore=["steps", "optim."]) == []
    assert config_changes(saved, saved) == []


def test_read_records_tolerates_a_torn_last_line_only(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 0, "a": 1}\n{"step": 1, "a": 2}\n{"step": 2, "a"')
    with pytest.warns(UserWarning, match="metrics.jsonl:3: ignoring the truncated final line"):
        recs = read_records(p)
    assert [r["step"] for r in recs] == [0, 1]
    p.write_text('{"step": 0}\n{"step": 1, \n{"step": 2}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2: not valid JSON"):
        read_records(p)
    p.write_text('[1, 2]\n{"step": 2}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:1: expected a JSON object"):
        read_records(p)
    with pytest.raises(ValueError, match="cannot read"):
        read_records(tmp_path / "missing.jsonl")


def test_finished_marks(tmp_path):
    assert not is_finished(tmp_path) and read_done(tmp_path) is None and not has_records(tmp_path)
    (tmp_path / "DONE.json").write_text("[not a dict]")
    assert read_done(tmp_path) is None
    mark_finished(tmp_path, {"hash": "abc"})
    assert is_finished(tmp_path) and read_done(tmp_path) == {"hash": "abc"}
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 0}) + "\n")
    assert has_records(tmp_path)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_stale_temp_files_of_dead_writers_are_swept(tmp_path):
    from rundir.files import atomic_write_bytes, sweep_stale_temps, temp_prefix

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".checkpoint.pt.{dead_pid}.abc123.tmp"
    stale.write_bytes(b"")
    stale_dir = tmp_path / f".model.{dead_pid}.xyz.tmp"
    stale_dir.mkdir()
    mine = tmp_path / f"{temp_prefix(tmp_path / 'metrics.jsonl')}q1w2.tmp"
    mine.write_bytes(b"")  # a live writer's (ours): kept
    other = tmp_path / ".hidden.tmp"
    other.write_bytes(b"")  # not our pattern: kept
    assert sorted(sweep_stale_temps(tmp_path)) == sorted([stale, stale_dir])
    assert mine.exists() and other.exists()
    atomic_write_bytes(tmp_path / "x.bin", b"1")
    assert {p.name for p in tmp_path.iterdir()} == {mine.name, other.name, "x.bin"}


def test_claim_sweeps_a_killed_writers_temp_file(tmp_path):
    from rundir.files import TEMP_SUFFIX

    d = tmp_path / "run"
    proc = _holder(d)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    leftover = d / f".checkpoint.pt.{proc.pid}.zz{TEMP_SUFFIX}"
    leftover.write_bytes(b"")
    claim_run_dir(d).release()
    assert not leftover.exists()
