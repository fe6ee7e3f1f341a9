"""Entropy-control sweeps: entropy (and accuracy) vs step for each setting of one knob
(Cui et al. 2025, Fig. 12: Clip-Cov ratio and KL-Cov coefficient; Fig. 9: entropy-loss coefficient;
Fig. 10: reference-KL coefficient).

The swept value of a run is its ``value`` tag (set by :mod:`reproduce.plans`), else read from its config:
``clip_cov`` -> ``clip_ratio``, ``kl_cov`` -> ``kl_coef``, ``entropy_coef`` / ``ref_kl_coef`` -> the
additive coefficients; a GRPO baseline counts as value 0.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .curves import Curves, load_many, smooth
from .style import color, new_figure, save_figure

SWEEPS = {"clip_cov": "clip_ratio", "kl_cov": "kl_coef", "entropy_coef": "entropy_coef",
          "ref_kl_coef": "ref_kl_coef"}
"""sweep name -> the knob it varies"""


def sweep_value(c: Curves, sweep: str) -> float:
    """The value of ``sweep``'s knob in run ``c`` (0 for a plain GRPO baseline)."""
    if sweep not in SWEEPS:
        raise ValueError(f"unknown sweep {sweep!r}; choose one of: {', '.join(SWEEPS)}")
    if c.meta.get("sweep") == sweep and "value" in c.meta:
        return float(c.meta["value"])
    knob = SWEEPS[sweep]
    if sweep in ("clip_cov", "kl_cov"):
        if c.meta["objective"] == sweep:
            import inspect

            from theory import objectives

            param = inspect.signature(getattr(objectives, sweep)).parameters.get(knob)
            default = np.nan if param is None else param.default
            return float(c.meta["params"].get(knob, default))
        return 0.0
    return float(c.meta.get(knob) or 0.0)


@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: its knob value, curves and final numbers (mean of the last fifth)."""

    value: float
    label: str
    kind: str
    step: np.ndarray
    entropy: np.ndarray
    """5-step smoothed training entropy"""
    val_step: np.ndarray
    val_acc: np.ndarray
    final_entropy: float
    final_acc: float


@dataclass(frozen=True)
class SweepResult:
    """Data behind one sweep figure: the runs sorted by the value of ``knob``."""

    sweep: str
    knob: str
    values: tuple[SweepPoint, ...]
    files: tuple[Path, ...] = ()


def sweep_data(curves, sweep: str) -> SweepResult:
    """Per value (sorted): step, smoothed entropy, accuracy, and the final entropy / accuracy."""
    rows = sorted(((sweep_value(c, sweep), c) for c in curves), key=lambda t: t[0])
    values = []
    for v, c in rows:
        k = max(1, c.entropy.size // 5)
        values.append(SweepPoint(value=v, label=c.label, kind=c.kind, step=c.step,
                                 entropy=smooth(c.entropy, 5), val_step=c.val_step, val_acc=c.val_acc,
                                 final_entropy=float(np.nanmean(c.entropy[-k:])),
                                 final_acc=float(np.nanmean(c.val_acc[-max(1, c.val_acc.size // 5):]))))
    return SweepResult(sweep=sweep, knob=SWEEPS[sweep], values=tuple(values))


def plot_sweep(run_dirs, out_stem: str | Path, sweep: str, pdf: bool = False) -> SweepResult:
    """Draw entropy and accuracy vs step, one line per value of ``sweep``."""
    data = sweep_data(load_many(run_dirs), sweep)
    fig, (ax_h, ax_r) = new_figure(2, width=4.2)
    for i, r in enumerate(data.values):
        lab = f"{data.knob}={r.value:g}"
        ax_h.plot(r.step, r.entropy, color=color(i), lw=1.2, label=lab)
        ax_r.plot(r.val_step, r.val_acc, color=color(i), lw=1.0, label=lab)
    fig_no = {"clip_cov": "Fig. 12 left", "kl_cov": "Fig. 12 right", "entropy_coef": "Fig. 9",
              "ref_kl_coef": "Fig. 10"}[sweep]
    ax_h.set(xlabel="step", ylabel="entropy (nats)", title=f"{sweep} sweep: entropy ({fig_no})")
    ax_r.set(xlabel="step", ylabel="accuracy", title="accuracy")
    ax_h.legend()
    return replace(data, files=tuple(save_figure(fig, out_stem, pdf)))
