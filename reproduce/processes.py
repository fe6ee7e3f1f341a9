"""Child processes that never outlive the reproduce runner.

Every run of a plan is a subprocess in a session (process group) of its own, so one signal reaches it
and anything it started. Three ways the runner can end, and what happens to its children:

- it returns or raises (an error, Ctrl-C): :func:`children_die_with_us` kills every live child group;
- it receives SIGTERM / SIGHUP: the handler turns the signal into ``SystemExit`` in the main thread, so
  the same clean-up runs;
- it is killed outright (``kill -9``): no handler runs, but each child was started with Linux's
  ``PR_SET_PDEATHSIG`` = SIGKILL, so the kernel kills it when the runner's thread that started it dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Iterator

__all__ = ["children_die_with_us", "kill_children", "run_child"]

_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()
_CLOSING = threading.Event()  # set while the runner shuts down: no new child may start
_PR_SET_PDEATHSIG = 1

try:  # resolved once, in the parent: the pre-exec hook must not load libraries after fork
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):  # pragma: no cover - non-glibc systems
    _prctl = None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def run_child(cmd: list[str], **popen_kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, ...)`` in a new session that dies with this process (see module doc).

    Accepts ``stdout``, ``stderr``, ``text``, ``env``, ``cwd`` like :func:`subprocess.run`; returns the
    completed process with its captured stdout.
    """
    with _LIVE_LOCK:  # started under the lock, so kill_children() cannot miss it
        if _CLOSING.is_set():
            raise RuntimeError("the runner is shutting down; no new run is started")
        proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_die_with_parent, **popen_kwargs)
        _LIVE.add(proc)
    try:
        out, err = proc.communicate()
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def kill_children(grace_s: float = 5.0) -> int:
    """SIGTERM every live child's process group, then SIGKILL what is left after ``grace_s``; returns
    how many children were signalled. No new child starts from now until the next
    :func:`children_die_with_us` block."""
    with _LIVE_LOCK:
        _CLOSING.set()
        live = list(_LIVE)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in live:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
        deadline = time.monotonic() + grace_s
        while sig == signal.SIGTERM and time.monotonic() < deadline and any(p.poll() is None for p in live):
            time.sleep(0.05)
    return len(live)


def _raise_exit(signum, frame):  # noqa: ARG001 - signal handler signature
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def children_die_with_us() -> Iterator[None]:
    """Within this block, SIGTERM / SIGHUP end the process through ``SystemExit`` (main thread only) and
    leaving the block in any way kills every child still running."""
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            handlers[sig] = signal.signal(sig, _raise_exit)
    _CLOSING.clear()
    try:
        yield
    finally:
        kill_children()
        for sig, old in handlers.items():
            signal.signal(sig, old)
