"""A run folder is owned by one run: claiming it, locking it against a second live writer, and
checking that a resumed run is the run that was saved.

- :func:`claim_run_dir` decides what may happen to a folder before anything is written in it:
  a folder that already holds a run (its ``config.json``) needs ``resume=True`` (continue it) or
  ``overwrite=True`` (clear it first); anything else is an error that says which to pass.
- :class:`RunLock` holds an exclusive ``flock`` on ``RUN/.lock`` while a run writes; the kernel drops it
  when the process dies (even by ``kill -9``), so a stale lock never blocks a later run, while a second
  live writer (two ``reproduce`` invocations, a rerun while the first still trains) fails at once.
- :func:`config_changes` lists the settings a resumed run would silently change.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

from .files import sweep_stale_temps

CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"

__all__ = ["CONFIG_FILE", "LOCK_FILE", "RunDirError", "RunLock", "claim_run_dir", "config_changes",
           "holds_run"]


class RunDirError(ValueError):
    """The run folder cannot be used as asked (it holds another run, or another process writes in it)."""


def holds_run(run_dir) -> bool:
    """True when ``run_dir`` holds a run (its resolved ``config.json``)."""
    return (Path(run_dir) / CONFIG_FILE).is_file()


class RunLock:
    """Exclusive lock on ``RUN/.lock`` for as long as the run writes (a context manager).

    Raises :class:`RunDirError` at :meth:`acquire` when another live process holds it; the message names
    that process's pid. Released by :meth:`release`, at exit, or by the kernel when the process dies.
    """

    def __init__(self, run_dir):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirError(f"{self.path.parent} is in use by another live run (pid {holder}); wait for it "
                              "to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __del__(self) -> None:  # an abandoned holder (e.g. a failed constructor) frees the folder
        self.release()

    def __enter__(self) -> "RunLock":
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()


def claim_run_dir(run_dir, *, resume: bool = False, overwrite: bool = False, what: str = "run",
                  resumable: bool = True) -> RunLock:
    """Take ownership of ``run_dir`` for one run and return its held :class:`RunLock`.

    - an empty or missing folder: created;
    - a folder holding a run: ``resume=True`` keeps it (the caller continues it), ``overwrite=True``
      removes everything in it first, neither is a :class:`RunDirError` naming both options;
    - a folder holding other files but no run (e.g. the ``spec.json`` / ``log.txt`` the reproduce runner
      writes first): kept, the run is written beside them;
    - ``run_dir`` naming a file: an error.
    The lock is taken before anything is removed, so ``overwrite`` never clears a live run's folder.
    ``what`` names the run in messages; ``resumable=False``: the message does not offer ``--resume``.
    """
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite exclude each other: resume continues the run, "
                          "overwrite replaces it")
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--out {run_dir} is a file, not a folder")
    lock = RunLock(run_dir).acquire()
    try:
        others = [p for p in run_dir.iterdir() if p.name != LOCK_FILE]
        if others and overwrite:
            for p in others:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        elif holds_run(run_dir) and not resume:
            hint = "pass --resume to continue it or --overwrite" if resumable else "pass --overwrite"
            raise RunDirError(f"{run_dir} already holds a {what}: {hint} to delete it and start a new one")
        sweep_stale_temps(run_dir)  # files a killed writer left half-written
    except BaseException:
        lock.release()
        raise
    return lock


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: list(d) if isinstance(d, tuple) else d}


def config_changes(saved: dict, new: dict, *, ignore: Iterable[str] = ()) -> list[str]:
    """The settings that differ between a saved resolved config and a new one, as
    ``"key: saved -> new"`` lines (nested keys dotted), leaving out keys in ``ignore`` (dotted, or a
    prefix ending in ``.``)."""
    a, b = _flat(saved), _flat(new)
    skip = tuple(ignore)

    def ignored(k: str) -> bool:
        return any(k == s or (s.endswith(".") and k.startswith(s)) for s in skip)

    return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}"
            for k in sorted(set(a) | set(b)) if not ignored(k) and a.get(k) != b.get(k)]
