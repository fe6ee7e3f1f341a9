"""The one reader of JSON-lines logs (a run's ``metrics.jsonl`` and any other one-object-per-line log):
records in file order, a torn last line (a run killed mid-write) skipped with a warning, any other bad
line an error naming file and line.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Iterator

__all__ = ["iter_records", "read_records"]


def iter_records(path) -> Iterator[tuple[str, dict]]:
    """Yields ``("FILE:LINE", record)`` for every JSON object of a JSONL file (``metrics.jsonl`` and any
    other one-object-per-line log), skipping blank lines.

    A final line that does not parse (a run killed mid-write) is skipped with a warning; any other
    malformed line, or a line that is not a JSON object, raises ``ValueError`` naming file and line.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror or err}") from None
    last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        where = f"{path}:{i + 1}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            if i == last:
                warnings.warn(f"{where}: ignoring the truncated final line ({err.msg})", stacklevel=3)
                continue
            raise ValueError(f"{where}: not valid JSON ({err.msg})") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        yield where, rec


def read_records(path) -> list[dict]:
    """All records of a JSONL log (e.g. a run's ``metrics.jsonl``), in file order
    (see :func:`iter_records`)."""
    return [rec for _, rec in iter_records(path)]
