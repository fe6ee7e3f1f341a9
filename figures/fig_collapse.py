"""Entropy collapse: validation accuracy and training entropy vs step, and the share of the entropy drop
and of the accuracy gain reached early (Cui et al. 2025, Fig. 1 left and Fig. 2; paper §2.3: 73% / 76%
in the first 1/12 of the steps, 94% / 93% in the first 1/3)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .curves import Curves, load_many, smooth
from .style import color, new_figure, save_figure, SMALL_LEGEND

FRACTIONS = (1 / 12, 1 / 3)
"""the two checkpoints of paper Fig. 2 (step 200 and 800 of 2400)"""


def progress_share(step, y, width: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """``(t, share)``: t = step / last step, share = (ỹ(t) − ỹ(0)) / (ỹ(end) − ỹ(0)) for the
    ``width``-smoothed series ỹ (1 = the whole change of the run has happened; NaN if ỹ(end) = ỹ(0))."""
    step, y = np.asarray(step, float), np.asarray(y, float)
    keep = np.isfinite(step) & np.isfinite(y)
    step, y = step[keep], y[keep]
    if step.size < 2:
        raise ValueError("progress_share needs at least 2 finite points")
    ys = smooth(y, width)
    total = ys[-1] - ys[0]
    t = (step - step[0]) / (step[-1] - step[0])
    share = (ys - ys[0]) / total if total != 0 else np.full_like(ys, np.nan)
    return t, share


def shares_at(step, y, fractions=FRACTIONS, width: int = 5) -> list[float]:
    """Share of the run's total change in ``y`` reached at each fraction of the steps (see
    :func:`progress_share`)."""
    t, share = progress_share(step, y, width)
    return [float(np.interp(f, t, share)) for f in fractions]


def _edge_mean(y, first: bool, frac: float = 0.1) -> float:
    """Mean of the first / last ``frac`` of the finite values of ``y`` (NaN when none)."""
    y = np.asarray(y if y is not None else [], dtype=float)
    y = y[np.isfinite(y)]
    if y.size == 0:
        return float("nan")
    k = max(1, int(round(frac * y.size)))
    return float(y[:k].mean() if first else y[-k:].mean())


@dataclass(frozen=True)
class CollapseRun:
    """One run's curves and collapse numbers."""

    label: str
    kind: str
    """``"llm"`` or ``"sim"``"""
    step: np.ndarray
    entropy: np.ndarray
    val_step: np.ndarray
    val_acc: np.ndarray
    entropy_share: list[float]
    """share of the run's entropy drop reached at each of :data:`FRACTIONS`"""
    gain_share: list[float]
    """share of the run's accuracy gain reached at each of :data:`FRACTIONS`"""
    entropy_drop: float
    """1 − H(end) / H(0) of the 5-step smoothed entropy"""
    acc_start: float
    acc_end: float
    reward_start: float
    """mean training reward of the first 10% of steps (NaN when not logged)"""
    reward_end: float


@dataclass(frozen=True)
class CollapseResult:
    """Data behind paper Fig. 1 (left) + Fig. 2: per run, and the mean shares over runs."""

    runs: tuple[CollapseRun, ...]
    fractions: np.ndarray
    entropy_share: np.ndarray
    """mean over runs of :attr:`CollapseRun.entropy_share` (NaN where every run is NaN)"""
    gain_share: np.ndarray
    files: tuple[Path, ...] = ()
    """the figure files written (empty when only the data was computed)"""


def collapse_data(curves: list[Curves]) -> CollapseResult:
    """Arrays behind the figure: per run the curves and shares, and their mean over runs."""
    runs = []
    for c in curves:
        runs.append(CollapseRun(label=c.label, kind=c.kind, step=c.step, entropy=c.entropy,
                                val_step=c.val_step, val_acc=c.val_acc,
                                entropy_share=shares_at(c.step, c.entropy),
                                gain_share=shares_at(c.val_step, c.val_acc),
                                entropy_drop=float(1 - smooth(c.entropy, 5)[-1] / smooth(c.entropy, 5)[0]),
                                acc_start=float(smooth(c.val_acc, 3)[0]),
                                acc_end=float(smooth(c.val_acc, 3)[-1]),
                                reward_start=_edge_mean(c.reward, first=True),
                                reward_end=_edge_mean(c.reward, first=False)))

    def nanmean(rows):  # NaN (not a warning) where every run is NaN
        a = np.array(rows, dtype=float)
        n = np.isfinite(a).sum(0)
        return np.where(n > 0, np.nansum(a, 0) / np.maximum(n, 1), np.nan)

    return CollapseResult(runs=tuple(runs), fractions=np.array(FRACTIONS),
                          entropy_share=nanmean([r.entropy_share for r in runs]),
                          gain_share=nanmean([r.gain_share for r in runs]))


def plot_collapse(run_dirs, out_stem: str | Path, pdf: bool = False,
                  val_key: str = "val/acc") -> CollapseResult:
    """Draw paper Fig. 1 (left) + Fig. 2 for ``run_dirs`` into ``out_stem``.png; return the data
    (:func:`collapse_data`) with the files written."""
    data = collapse_data(load_many(run_dirs, val_key))
    fig, (ax, ax_share) = new_figure(2, width=4.6)
    twin = ax.twinx()
    for i, r in enumerate(data.runs):
        ax.plot(r.val_step, 100 * r.val_acc, color=color(i), lw=1.2, label=f"{r.label} acc")
        twin.plot(r.step, r.entropy, color=color(i), lw=1.0, ls="--", alpha=0.8)
        t, es = progress_share(r.step, r.entropy)
        ax_share.plot(t, 100 * es, color=color(i), ls="--", lw=1, alpha=0.8)
        tg, gs = progress_share(r.val_step, r.val_acc)
        ax_share.plot(tg, 100 * gs, color=color(i), lw=1)
    ax.set(xlabel="step", ylabel="validation accuracy (%) [solid]", title="accuracy and entropy (Fig. 1)")
    twin.set_ylabel("training entropy (nats) [dashed]")
    ax.legend(loc="best", fontsize=SMALL_LEGEND)
    for f in FRACTIONS:
        ax_share.axvline(f, color="grey", lw=0.8, ls=":")
    ax_share.set(xlabel="fraction of training steps", ylabel="% of total change",
                 title="entropy consumed [dashed] / gain [solid] (Fig. 2)")
    return replace(data, files=tuple(save_figure(fig, out_stem, pdf)))
