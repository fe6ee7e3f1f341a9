"""The entropy-dynamics diagnostics files of a run: ``RUN/diagnostics/step_<k>.npz``.

One compressed ``.npz`` per diagnosed step holds that step's per-state arrays (float32), keyed by name
(see ``llm_rl.diagnostics`` for what each array is). Written atomically, so a killed run never
leaves half a file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .files import atomic_write_bytes

DIAG_DIR = "diagnostics"

__all__ = ["DIAG_DIR", "has_per_state", "load_per_state", "per_state_path", "save_per_state"]


def per_state_path(run_dir, step: int) -> Path:
    """``RUN/diagnostics/step_<step:06d>.npz``."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return Path(run_dir) / DIAG_DIR / f"step_{step:06d}.npz"


def _float32(v) -> np.ndarray:
    if hasattr(v, "detach"):  # a torch tensor, on any device
        v = v.detach().cpu().float().numpy()
    return np.asarray(v, dtype=np.float32)


def save_per_state(run_dir, step: int, per_state: dict) -> Path:
    """Write one diagnosed step's per-state arrays (tensors or arrays, stored as float32)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: _float32(v) for k, v in per_state.items()})
    return atomic_write_bytes(per_state_path(run_dir, step), buf.getvalue())


def has_per_state(run_dir) -> bool:
    """True when the run has at least one diagnosed step's file."""
    return any((Path(run_dir) / DIAG_DIR).glob("step_*.npz"))


def load_per_state(run_dir) -> dict[int, dict[str, np.ndarray]]:
    """``{step: {name: array}}`` of every diagnosed step of a run (empty when none was diagnosed)."""
    out = {}
    for path in sorted((Path(run_dir) / DIAG_DIR).glob("step_*.npz")):
        try:
            with np.load(path) as data:
                out[int(path.stem.split("_")[1])] = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as err:
            raise ValueError(f"{path}: unreadable diagnostics file ({err})") from None
    return out
