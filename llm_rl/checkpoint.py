"""Checkpoints that let ``--resume`` continue a run exactly.

``<out>/checkpoint.pt`` holds the model and optimizer / scheduler state dicts, every RNG the trainer
draws from (its named ``torch.Generator`` states plus the global torch CPU/CUDA states), the next
step and the data cursor. It is written with ``rundir.files.atomic_save_torch`` (temp file, fsync,
rename), so a run killed mid-write keeps the previous checkpoint intact.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from rundir.files import atomic_save_torch

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_KEYS = frozenset({"model", "optimizer", "scheduler", "rng", "step", "cursor"})


def rng_state(generators: dict[str, torch.Generator]) -> dict:
    """Snapshot of the named generators and the global torch RNGs."""
    state = {"generators": {k: g.get_state() for k, g in generators.items()},
             "torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict, generators: dict[str, torch.Generator]) -> None:
    """Inverse of :func:`rng_state` (generator names must match)."""
    missing = sorted(set(generators) - set(state["generators"]))
    if missing:
        raise ValueError(f"checkpoint has no state for generator(s) {missing}")
    for k, g in generators.items():
        g.set_state(state["generators"][k])
    torch.set_rng_state(state["torch_cpu"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])


def save_checkpoint(out_dir: str | os.PathLike, *, model, optimizer, scheduler, generators: dict,
                    step: int, cursor: dict, extra: dict | None = None) -> Path:
    """Atomically write ``<out_dir>/checkpoint.pt``; ``step`` is the next step to run."""
    payload = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(generators),
        "step": int(step),
        "cursor": dict(cursor),
        "extra": extra or {},
    }
    return atomic_save_torch(Path(out_dir) / CHECKPOINT_NAME, payload)


def load_checkpoint(out_dir: str | os.PathLike) -> dict:
    """Read ``<out_dir>/checkpoint.pt`` with ``weights_only=True``: tensors and plain Python data only, so
    a checkpoint from someone else's folder cannot run code when loaded.

    Raises:
      ValueError: the file is absent, truncated / corrupt, or holds anything but plain data.
    """
    path = Path(out_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise ValueError(f"no checkpoint to resume from at {path}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path} holds objects other than tensors and plain data; refusing to load it "
                         f"({str(err).splitlines()[0]})") from None
    except (RuntimeError, EOFError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else repr(err)
        raise ValueError(f"{path} is truncated or corrupt ({first}); "
                         "delete it to restart the run, or restore a good copy") from None
    if not isinstance(ck, dict) or not CHECKPOINT_KEYS <= set(ck):
        raise ValueError(f"{path} is not a checkpoint of `entropy-mech train`")
    return ck
