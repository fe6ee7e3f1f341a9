"""What may continue a run: ``--resume`` continues exactly the run saved in a folder, or says why not.

A run folder is owned by one run (:mod:`rundir.ownership`). Resuming it with a different configuration
would silently mix two runs in one ``metrics.jsonl``, so every changed setting is an error that names it;
the one documented exception is ``extend``: a larger ``steps`` continues a (finished or killed) run further.
"""

from __future__ import annotations

import json
from pathlib import Path

from rundir.ownership import CONFIG_FILE, RunDirError, config_changes

from .checkpoint import CHECKPOINT_NAME
from .config import RUN_INFO_KEYS, TrainConfig

__all__ = ["NoUpdatesError", "check_resumable", "saved_config"]


class NoUpdatesError(RuntimeError):
    """A training call took no optimizer step at all (every group of every rollout step was dropped)."""


def saved_config(out_dir) -> TrainConfig:
    """The :class:`TrainConfig` saved in ``out_dir/config.json`` (RunDirError when there is none)."""
    path = Path(out_dir) / CONFIG_FILE
    try:
        saved = json.loads(path.read_text())["config"]
    except FileNotFoundError:
        raise RunDirError(f"{out_dir} holds no run to resume (no {CONFIG_FILE}); "
                          "start one without --resume") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RunDirError(f"{path} is unreadable ({err}); it is not the config of `entropy-mech train`") \
            from None
    try:
        return TrainConfig.from_dict(saved)
    except (TypeError, ValueError) as err:
        raise RunDirError(f"{path} is not the config of `entropy-mech train` ({err})") from None


def check_resumable(out_dir, config: TrainConfig, *, extend: bool = False) -> None:
    """Raise :class:`RunDirError` unless ``config`` may continue the run saved in ``out_dir``: the folder
    holds a checkpoint and the saved config equals ``config`` (``steps`` may grow when ``extend``)."""
    saved = saved_config(out_dir)
    if not (Path(out_dir) / CHECKPOINT_NAME).is_file():
        raise RunDirError(f"{out_dir} holds a run that stopped before its first checkpoint: nothing to "
                          "resume; "
                          "start it again with --overwrite")
    ignore = list(RUN_INFO_KEYS) + (["steps"] if extend else [])
    changes = config_changes(saved.to_dict(), config.to_dict(), ignore=ignore)
    if changes:
        raise RunDirError(
            f"--resume continues the run saved in {out_dir} exactly, but these settings differ from it: "
            f"{'; '.join(changes)}. Drop them, start a new run in another --out, or replace this one with "
            "--overwrite" + ("; to train a run longer, add --extend" if not extend and any(
                c.startswith("steps:") for c in changes) else ""))
    if extend and config.steps < saved.steps:
        raise RunDirError(f"--extend continues a run further: --steps {config.steps} is below the saved "
                          "run's "
                          f"{saved.steps}")
