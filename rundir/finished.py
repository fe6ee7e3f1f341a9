"""Finished-run detection: a run directory is finished when it holds ``DONE.json``.

``DONE.json`` is written last, atomically, by whoever ran the run to completion (the reproduce job
runner, :mod:`reproduce.experiments`); it records what finished (e.g. the spec hash, the cached model
of a warm start). Its absence means the run never finished, whatever else the folder holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .files import atomic_write_json

DONE_FILE = "DONE.json"
RECORD_FILES = ("arrays.npz", "metrics.jsonl")  # a simulator run's arrays, an LLM run's metrics

__all__ = ["DONE_FILE", "RECORD_FILES", "has_records", "is_finished", "mark_finished", "read_done"]


def read_done(run_dir) -> dict[str, Any] | None:
    """The ``DONE.json`` record of ``run_dir``, or ``None`` when it is missing or unreadable."""
    try:
        done = json.loads((Path(run_dir) / DONE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return done if isinstance(done, dict) else None


def is_finished(run_dir) -> bool:
    """True when ``run_dir`` holds a ``DONE.json`` file."""
    return (Path(run_dir) / DONE_FILE).is_file()


def has_records(run_dir) -> bool:
    """True when ``run_dir`` holds a run's records (``arrays.npz`` or ``metrics.jsonl``)."""
    return any((Path(run_dir) / name).is_file() for name in RECORD_FILES)


def mark_finished(run_dir, record: dict[str, Any]) -> Path:
    """Write ``record`` to ``run_dir/DONE.json`` atomically: the run is finished from now on."""
    return atomic_write_json(Path(run_dir) / DONE_FILE, record)
