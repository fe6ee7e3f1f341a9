"""Experiment-tracking backends of :class:`llm_rl.metrics.MetricsWriter`: where each metrics record goes
besides ``<out>/metrics.jsonl``, chosen by ``TrainConfig.report_to`` (and the older ``tensorboard`` flag).

Every backend receives the same ``{key: number}`` dict per step (the JSONL record without ``step`` and
without the non-finite values written there as ``null``), so the metric names are the same everywhere
(:mod:`llm_rl.metrics` documents them), and the resolved config once per run (not again on resume):

==============  ==================================================================================
backend         what it writes
==============  ==================================================================================
(none)          :class:`TrackingBackend` itself: the null backend, every method does nothing
``tensorboard`` ``<out>/tensorboard`` event files: one scalar per key (``add_scalar``) and the config
                as hparams (the hparams plugin's experiment + session summaries, keys dotted like
                ``optim.lr``; lists and dicts as JSON text)
``wandb``       a Weights & Biases run (``wandb.init`` / ``run.log(values, step=step)``; nested config);
                project ``$WANDB_PROJECT`` (default ``entropy-mechanism``), files under ``$WANDB_DIR``
                (default ``<out>``); ``WANDB_MODE=offline`` needs no network (``wandb sync`` uploads
                later). Its run id is kept in ``<out>/wandb_run_id`` so ``--resume`` continues the same
                run (steps already logged before the resumed checkpoint are ignored by W&B)
==============  ==================================================================================

Heavy packages (torch's TensorBoard writer, wandb) are imported only when their backend is opened;
``wandb`` is an optional dependency (``pip install wandb``; part of the ``test`` extra).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

#: metric keys shown as the hparams plugin's metric columns (documented in llm_rl.metrics)
HPARAM_METRICS = ("entropy/train", "reward/mean", "val/acc", "val/acc_sampled", "val/entropy")
WANDB_ID_FILE = "wandb_run_id"
DEFAULT_WANDB_PROJECT = "entropy-mechanism"


class TrackingBackend:
    """A destination of metric records; this base class is the null backend (every method does nothing),
    so the trainer calls the same methods whatever is configured."""

    name = "null"

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Record the resolved config of the run (called once per run)."""

    def log(self, values: Mapping[str, float], step: int) -> None:
        """Record one step's ``{metric key: number}``."""

    def close(self) -> None:
        """Flush and release whatever the backend holds."""


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, int | float | str | bool]:
    """One key per leaf, as hparams need: ``{"optim": {"lr": 1e-4}, "report_to": ["wandb"]}`` ->
    ``{"optim.lr": 1e-4, "report_to": '["wandb"]'}``. Nested dicts become dotted keys; lists, tuples, empty
    dicts and None become JSON text (hparams accept only bool, int, float and str). ValueError for a
    non-mapping or a non-string key."""
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a mapping, got {type(config).__name__}")
    out: dict[str, int | float | str | bool] = {}
    for key, value in config.items():
        if not isinstance(key, str):
            raise ValueError(f"config keys must be strings, got {key!r}")
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_config(value, name + "."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value, sort_keys=True, default=str)
    return out


class TensorBoardBackend(TrackingBackend):
    """Scalars and hparams in TensorBoard event files under ``log_dir`` (``torch.utils.tensorboard``)."""

    name = "tensorboard"

    def __init__(self, log_dir: str | os.PathLike):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))

    def log_config(self, config: Mapping[str, Any]) -> None:
        """The config as the hparams plugin's experiment and session (what ``SummaryWriter.add_hparams``
        writes, but into this run's own event file instead of a new sub-run)."""
        from torch.utils.tensorboard.summary import hparams

        for summary in hparams(flatten_config(config), dict.fromkeys(HPARAM_METRICS, 0.0)):
            self.writer.file_writer.add_summary(summary)

    def log(self, values: Mapping[str, float], step: int) -> None:
        """One ``add_scalar(key, value, step)`` per key."""
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


class WandbBackend(TrackingBackend):
    """A Weights & Biases run (see the module docstring for project, directory, offline mode and resume).

    Args:
      run_dir: the training run's folder (holds ``wandb_run_id``; the default ``WANDB_DIR``).
      resume: continue the W&B run whose id ``run_dir`` holds (a new run when it holds none).
    """

    name = "wandb"

    def __init__(self, run_dir: str | os.PathLike, *, resume: bool = False):
        try:
            import wandb
        except ImportError:
            raise ValueError("report_to 'wandb' needs the wandb package: pip install wandb "
                             "(set WANDB_MODE=offline to log without network)") from None
        from rundir.files import atomic_write_text

        run_dir = Path(run_dir)
        id_file = run_dir / WANDB_ID_FILE
        run_id = id_file.read_text().strip() if resume and id_file.is_file() else None
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or DEFAULT_WANDB_PROJECT,
                              name=run_dir.resolve().name, dir=os.environ.get("WANDB_DIR") or str(run_dir),
                              id=run_id, resume="allow" if run_id else None)
        if run_id is None:
            atomic_write_text(id_file, self.run.id + "\n")

    def log_config(self, config: Mapping[str, Any]) -> None:
        """The nested config as the run's config."""
        self.run.config.update(dict(config), allow_val_change=True)

    def log(self, values: Mapping[str, float], step: int) -> None:
        """``run.log(values, step=step)``."""
        self.run.log(dict(values), step=step)

    def close(self) -> None:
        """Finish the run (offline: its files are complete on disk)."""
        self.run.finish()


#: report_to name -> backend class (llm_rl.config.TRACKING_BACKENDS lists the same names)
BACKENDS: dict[str, type[TrackingBackend]] = {"tensorboard": TensorBoardBackend, "wandb": WandbBackend}


def open_backends(out: str | os.PathLike, report_to, *, resume: bool = False) -> list[TrackingBackend]:
    """The backends named in ``report_to`` for the run folder ``out`` (TensorBoard in ``out/tensorboard``);
    ValueError naming an unknown name."""
    if isinstance(report_to, str):
        raise ValueError(f"report_to must be a list of backend names, got the string {report_to!r}")
    unknown = [b for b in report_to if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown tracking backend(s) {unknown}; choose from: {', '.join(BACKENDS)}")
    out = Path(out)
    made: list[TrackingBackend] = []
    try:
        for name in dict.fromkeys(report_to):
            made.append(TensorBoardBackend(out / "tensorboard") if name == "tensorboard"
                        else BACKENDS[name](out, resume=resume))
    except BaseException:
        for backend in made:
            backend.close()
        raise
    return made


__all__ = ["BACKENDS", "HPARAM_METRICS", "TensorBoardBackend", "TrackingBackend", "WandbBackend",
           "flatten_config", "open_backends"]
