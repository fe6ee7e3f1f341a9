"""Read (step, H, R) series from training logs: this package's JSONL metrics, CSV exports, TensorBoard.

Entropy and validation score are usually logged at different steps (the paper validates every 4
rollout steps, Cui et al. 2025 §2.2). Every reader therefore collects the two series separately and
:func:`align_to_preceding` pairs each score with the entropy logged at the nearest step at or before
it; scores logged before the first entropy value are dropped. The result says whether any pairing
was not at the same step, so callers can report it.

Formats (auto-detected by :func:`read_run_log`) and their default keys (entropy; score):
  jsonl          one JSON object per line with an integer "step" key and flat namespaced metric keys
                 (``{"step": 40, "entropy/train": 0.61, "val/acc": 0.33}``); a line may carry only some keys.
                 Defaults "entropy/train"; "val/acc" (also for csv and tensorboard).
  csv            a header row; step column "step", falling back to wandb's "_step"; empty cells are missing.
  tensorboard    an event file (name contains "tfevents") or a directory holding them, read with
                 ``tensorboard``'s EventAccumulator (scalar summaries, or tensor summaries of one value).
  verl           verl's file logger (``trainer.logger=[file]``): JSONL lines ``{"step": 40, "data": {...}}``.
                 Defaults "actor/entropy"; the one key matching ``val-core/<source>/acc/mean@<n>`` (else
                 ``.../reward/mean@<n>``): verl's headline validation metric (several data sources: pass one).
  trainer_state  transformers / TRL ``trainer_state.json`` (a file, a checkpoint directory, or an output
                 directory of ``checkpoint-*``: the latest is read); records are its ``log_history`` list.
                 Defaults "entropy" (TRL GRPO's training entropy); "eval_accuracy", else "eval_reward", else
                 the one ``eval_rewards/<name>/mean``.

Repeated steps of one key (e.g. a resumed run) keep the value read last.
"""

from __future__ import annotations

import csv
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np

from .records import iter_records
from .series import RunSeries, align_to_preceding, build_series

__all__ = [
    "DEFAULT_ENTROPY_KEY",
    "DEFAULT_SCORE_KEY",
    "RunSeries",
    "align_to_preceding",
    "detect_format",
    "read_csv",
    "DEFAULT_KEYS",
    "default_score_key",
    "read_jsonl",
    "read_run_log",
    "read_tensorboard",
    "read_trainer_state",
    "read_verl",
    "trainer_state_file",
]

DEFAULT_ENTROPY_KEY = "entropy/train"
DEFAULT_SCORE_KEY = "val/acc"
DEFAULT_STEP_KEYS = ("step", "_step")
FORMATS = ("jsonl", "csv", "tensorboard", "verl", "trainer_state")
#: (entropy key, score key or the ordered regexes whose single full match is the score key), per format
DEFAULT_KEYS: dict[str, tuple[str, str | tuple[str, ...]]] = {
    "jsonl": (DEFAULT_ENTROPY_KEY, DEFAULT_SCORE_KEY),
    "csv": (DEFAULT_ENTROPY_KEY, DEFAULT_SCORE_KEY),
    "tensorboard": (DEFAULT_ENTROPY_KEY, DEFAULT_SCORE_KEY),
    "verl": ("actor/entropy", (r"val-core/.+/acc/mean@\d+", r"val-core/.+/reward/mean@\d+")),
    "trainer_state": ("entropy", ("eval_accuracy", "eval_reward", r"eval_rewards/[^/]+/mean")),
}


def _missing_key(path, kind: str, key: str, available) -> ValueError:
    """The error for a missing key; keys starting with the missing key's leading letters are listed first."""
    head = re.match(r"[A-Za-z]*", key).group()  # e.g. "val", "eval", "actor"
    avail = sorted(available, key=lambda a: (not a.startswith(head), a))
    more = f" ... ({len(avail)} in all)" if len(avail) > 40 else ""
    shown = ", ".join(repr(a) for a in avail[:40]) + more
    return ValueError(f"{path}: {kind} '{key}' not found; available: {shown or 'none'}")


def default_score_key(path, fmt: str, available) -> str:
    """The score key of format ``fmt`` among the ``available`` keys: its fixed default, or the first of its
    regexes (:data:`DEFAULT_KEYS`) with exactly one full match. ValueError when a regex matches several
    keys (name one) or none matches (listing the available keys)."""
    default = DEFAULT_KEYS[fmt][1]
    if isinstance(default, str):
        return default
    for pattern in default:
        found = sorted(k for k in available if re.fullmatch(pattern, k))
        if len(found) == 1:
            return found[0]
        if found:
            raise ValueError(f"{path}: several score keys match the {fmt} default '{pattern}': "
                             f"{', '.join(found)}; choose one (--score-key)")
    raise _missing_key(path, f"{fmt} default score key (patterns {', '.join(default)})", default[0],
                       available)


def _to_float(v, where: str) -> float | None:
    """None for a missing value; float otherwise (NaN kept, so the law fit reports dropped rows)."""
    if v is None or (isinstance(v, str) and v.strip() == ""):
        return None
    if isinstance(v, bool):
        raise ValueError(f"{where}: expected a number, got {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a number, got {v!r}") from None


def _to_step(v, where: str) -> int:
    f = _to_float(v, where)
    if f is None or not math.isfinite(f) or f != int(f):
        raise ValueError(f"{where}: step must be an integer, got {v!r}")
    return int(f)


# ----------------------------------------------------------------------------- readers

def read_jsonl(path, *, entropy_key: str = DEFAULT_ENTROPY_KEY, score_key: str = DEFAULT_SCORE_KEY,
               step_key: str = "step") -> RunSeries:
    """Reads this package's JSONL run metrics (one JSON object per line with an integer ``step_key``).

    A final line that does not parse (a run killed mid-write) is skipped with a warning; any other
    malformed line raises ``ValueError`` naming file and line.
    """
    return _read_keyed(path, "jsonl", iter_records(path), entropy_key, score_key, step_key)


def _read_keyed(path, fmt, records, entropy_key, score_key, step_key="step") -> RunSeries:
    """Series of ``records`` ((where, dict) pairs, each with ``step_key`` where it holds a value); a None
    key is the format's default (:func:`default_score_key`)."""
    records = list(records)
    seen: set[str] = set().union(*(rec for _, rec in records))
    entropy_key = entropy_key or DEFAULT_KEYS[fmt][0]
    score_key = score_key or default_score_key(path, fmt, seen - {step_key})
    e_st, e_v, s_st, s_v = [], [], [], []
    for where, rec in records:
        has_e, has_s = rec.get(entropy_key) is not None, rec.get(score_key) is not None
        if not (has_e or has_s):
            continue
        if step_key not in rec:
            raise ValueError(f"{where}: record has no '{step_key}' key")
        step = _to_step(rec[step_key], where)
        if has_e:
            e_st.append(step)
            e_v.append(_to_float(rec[entropy_key], where))
        if has_s:
            s_st.append(step)
            s_v.append(_to_float(rec[score_key], where))
    for key, vals, kind in ((entropy_key, e_st, "entropy key"), (score_key, s_st, "score key")):
        if not vals and key not in seen:
            raise _missing_key(path, kind, key, seen - {step_key})
    return build_series(path, fmt, entropy_key, score_key, e_st, e_v, s_st, s_v)


def read_verl(path, *, entropy_key: str | None = None, score_key: str | None = None) -> RunSeries:
    """Reads verl's file-logger JSONL (``{"step": s, "data": {metric: value}}`` per line); None keys: the
    verl defaults of :data:`DEFAULT_KEYS` ("actor/entropy"; the one ``val-core/<source>/acc/mean@<n>``)."""
    def records():
        for where, rec in iter_records(path):
            if not isinstance(rec.get("data"), dict):
                raise ValueError(f"{where}: not a verl file-logger line (no 'data' object)")
            yield where, {**rec["data"], "step": rec.get("step")}

    return _read_keyed(Path(path), "verl", records(), entropy_key, score_key)


def trainer_state_file(path) -> Path:
    """The ``trainer_state.json`` of a file, a checkpoint directory, or an output directory holding
    ``checkpoint-<step>`` directories (the highest step); ValueError if there is none."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / "trainer_state.json").is_file():
        return path / "trainer_state.json"
    ckpts = [p for p in path.glob("checkpoint-*/trainer_state.json") if p.parent.name[11:].isdigit()]
    if not ckpts:
        raise ValueError(f"{path}: no trainer_state.json in it or in a checkpoint-* directory")
    return max(ckpts, key=lambda p: int(p.parent.name[11:]))


def read_trainer_state(path, *, entropy_key: str | None = None, score_key: str | None = None) -> RunSeries:
    """Reads the ``log_history`` of a transformers / TRL ``trainer_state.json`` (file or directory, see
    :func:`trainer_state_file`); each entry has a "step"; None keys: the defaults of :data:`DEFAULT_KEYS`
    ("entropy"; "eval_accuracy", else "eval_reward", else the one ``eval_rewards/<name>/mean``)."""
    path = trainer_state_file(path)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path} as JSON: {err}") from None
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise ValueError(f"{path}: no 'log_history' list; not a transformers/TRL trainer_state.json")
    for i, rec in enumerate(history):
        if not isinstance(rec, dict):
            raise ValueError(f"{path}: log_history[{i}] is not an object")
    records = ((f"{path}:log_history[{i}]", rec) for i, rec in enumerate(history))
    return _read_keyed(path, "trainer_state", records, entropy_key, score_key)


def read_csv(path, *, entropy_key: str = DEFAULT_ENTROPY_KEY, score_key: str = DEFAULT_SCORE_KEY,
             step_key: str | None = None) -> RunSeries:
    """Reads a CSV with a header row (e.g. a wandb export). ``step_key=None`` tries "step", then "_step"."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        if step_key is None:
            step_key = next((k for k in DEFAULT_STEP_KEYS if k in cols), None)
            if step_key is None:
                raise _missing_key(path, "step column (tried 'step', '_step')", "step", cols)
        for key, kind in ((step_key, "step column"), (entropy_key, "entropy column"),
                          (score_key, "score column")):
            if key not in cols:
                raise _missing_key(path, kind, key, cols)
        e_st, e_v, s_st, s_v = [], [], [], []
        for i, row in enumerate(reader, start=2):
            where = f"{path}:{i}"
            e, s = _to_float(row[entropy_key], where), _to_float(row[score_key], where)
            if e is None and s is None:
                continue
            step = _to_step(row[step_key], where)
            if e is not None:
                e_st.append(step)
                e_v.append(e)
            if s is not None:
                s_st.append(step)
                s_v.append(s)
    return build_series(path, "csv", entropy_key, score_key, e_st, e_v, s_st, s_v)


def read_tensorboard(path, *, entropy_key: str = DEFAULT_ENTROPY_KEY,
                     score_key: str = DEFAULT_SCORE_KEY) -> RunSeries:
    """Reads scalar tags from a TensorBoard event file or directory (``tensorboard``'s EventAccumulator)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        from tensorboard.util import tensor_util
    except ImportError as err:
        raise ImportError("reading TensorBoard logs needs the 'tensorboard' package: "
                          "pip install 'entropy-mechanism[logs]' (or pip install tensorboard)") from err
    path = Path(path)
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    scalars, tensors = set(tags.get("scalars", [])), set(tags.get("tensors", []))

    def events(key: str, kind: str):
        if key in scalars:
            evs = acc.Scalars(key)
            return [e.step for e in evs], [float(e.value) for e in evs]
        if key in tensors:
            evs = acc.Tensors(key)
            vals = [np.asarray(tensor_util.make_ndarray(e.tensor_proto)).reshape(-1)[0] for e in evs]
            return [e.step for e in evs], [float(v) for v in vals]
        raise _missing_key(path, kind, key, scalars | tensors)

    e_st, e_v = events(entropy_key, "entropy tag")
    s_st, s_v = events(score_key, "score tag")
    return build_series(path, "tensorboard", entropy_key, score_key, e_st, e_v, s_st, s_v)


# ----------------------------------------------------------------------------- dispatch

def _jsonl_kind(path: Path) -> str:
    """"verl" if the first record of a JSONL file is a verl file-logger line ({"step", "data": {...}})."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            where, first = next(iter_records(path), (None, None))
        except ValueError:
            return "jsonl"  # the jsonl reader reports the bad line
    return "verl" if isinstance(first, dict) and isinstance(first.get("data"), dict) and "step" in first \
        else "jsonl"


def detect_format(path) -> tuple[str, Path]:
    """Returns (format, file or directory to read) for a log path.

    Files: ``.jsonl``/``.ndjson`` -> verl if its first line is ``{"step": .., "data": {..}}`` else jsonl,
    ``.json`` -> trainer_state, ``.csv`` -> csv, a name containing "tfevents" -> tensorboard.
    Directories: ``trainer_state.json`` or ``checkpoint-*/trainer_state.json`` -> trainer_state, else
    ``metrics.jsonl`` if present, else a single ``*.jsonl``, else event files -> the directory itself, else
    a single ``*.csv``.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or directory")
    if path.is_file():
        name = path.name.lower()
        if name.endswith((".jsonl", ".ndjson")):
            return _jsonl_kind(path), path
        if name.endswith(".json"):
            return "trainer_state", path
        if name.endswith(".csv"):
            return "csv", path
        if "tfevents" in name:
            return "tensorboard", path
        raise ValueError(f"{path}: cannot tell the log format from the name (expected .jsonl, .json "
                         "(trainer_state), .csv or a TensorBoard 'events.out.tfevents.*' file); pass the "
                         "format explicitly")
    if (path / "trainer_state.json").is_file() or any(path.glob("checkpoint-*/trainer_state.json")):
        return "trainer_state", trainer_state_file(path)
    if (path / "metrics.jsonl").is_file():
        return "jsonl", path / "metrics.jsonl"
    jsonl = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".jsonl", ".ndjson"))
    if len(jsonl) == 1:
        return _jsonl_kind(jsonl[0]), jsonl[0]
    if any("tfevents" in p.name for p in path.iterdir() if p.is_file()):
        return "tensorboard", path
    csvs = sorted(p for p in path.glob("*.csv") if p.is_file())
    if len(csvs) == 1 and not jsonl:
        return "csv", csvs[0]
    found = [p.name for p in jsonl + csvs]
    raise ValueError(f"{path}: directory holds no single recognisable log (trainer_state.json, "
                     f"metrics.jsonl, one *.jsonl, TensorBoard event files, or one *.csv); "
                     f"found {found or 'none of those'}")


def read_run_log(path, *, entropy_key: str | None = None, score_key: str | None = None,
                 step_key: str | None = None, fmt: str = "auto") -> RunSeries:
    """Reads one log into aligned (step, H, R) with the reader chosen by ``fmt`` or :func:`detect_format`.

    Args:
      path: file or directory.
      entropy_key, score_key: metric key / CSV column / TensorBoard tag names; None: the format's default
        (:data:`DEFAULT_KEYS`; verl's and TRL's score key is picked by pattern among the keys present).
      step_key: JSONL step key (default "step") or CSV step column (default "step", then "_step");
        ignored for TensorBoard, verl and trainer_state, which store steps themselves.
      fmt: "auto" or one of :data:`FORMATS`.
    """
    if fmt == "auto":
        fmt, target = detect_format(path)
    elif fmt in FORMATS:
        target = Path(path)
        if not target.exists():
            raise ValueError(f"{target}: no such file or directory")
    else:
        raise ValueError(f"unknown log format {fmt!r}; choose auto, {', '.join(FORMATS)}")
    if fmt == "verl":
        return read_verl(target, entropy_key=entropy_key, score_key=score_key)
    if fmt == "trainer_state":
        return read_trainer_state(target, entropy_key=entropy_key, score_key=score_key)
    keys = dict(entropy_key=entropy_key or DEFAULT_ENTROPY_KEY, score_key=score_key or DEFAULT_SCORE_KEY)
    if fmt == "jsonl":
        return read_jsonl(target, step_key=step_key or "step", **keys)
    if fmt == "csv":
        return read_csv(target, step_key=step_key, **keys)
    return read_tensorboard(target, **keys)
