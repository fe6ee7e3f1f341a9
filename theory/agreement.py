"""How well a prediction agrees with an observation: R², sign accuracy and Pearson r, each with a seeded
95% bootstrap interval; the step size η taken as given or fitted with η >= 0 (so that a sign-flipped
prediction cannot score by a negative fitted scale); and the correlation of two per-step series with a
moving-block bootstrap interval (steps are autocorrelated, so single steps are not resampled alone).

The one home of these estimators: used by :mod:`llm_rl.diagnostics` and :mod:`llm_rl.diagnostics_summary`
(LLM per-state dynamics), :mod:`figures.fig_theory` (tabular LM: Theorems 1-2 against the observed ΔH),
:mod:`figures.fig_covariance` (Fig. 8 left: Cov against −ΔH) and :mod:`figures.fig_dynamics`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NAN = float("nan")
CI = tuple[float, float]


def _as_1d(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).ravel()


def r2(obs: np.ndarray, pred: np.ndarray, w: np.ndarray | None = None) -> float:
    """R² = 1 − Σ w (obs − pred)² / Σ w (obs − mean_w obs)² of ``pred`` taken as is (NaN: constant obs)."""
    w = np.ones_like(obs) if w is None else w
    sst = float((w * (obs - np.average(obs, weights=w)) ** 2).sum()) if w.sum() > 0 else 0.0
    return 1.0 - float((w * (obs - pred) ** 2).sum()) / sst if sst > 0 else NAN


def sign_accuracy(obs: np.ndarray, pred: np.ndarray, w: np.ndarray | None = None) -> float:
    """Weighted share of points where sign(pred) == sign(obs) (NaN when there are none)."""
    w = np.ones_like(obs) if w is None else w
    return float((w * (np.sign(obs) == np.sign(pred))).sum() / w.sum()) if w.sum() > 0 else NAN


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r of the finite pairs (NaN with fewer than 3 or a constant series)."""
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3 or np.std(x[keep]) == 0 or np.std(y[keep]) == 0:
        return NAN
    return float(np.corrcoef(x[keep], y[keep])[0, 1])


def nonneg_scale(obs: np.ndarray, pred: np.ndarray, w: np.ndarray | None = None) -> float:
    """argmin_{c >= 0} Σ w (obs − c pred)² = max(0, <pred, obs>_w / <pred, pred>_w) (0 when pred is 0)."""
    w = np.ones_like(obs) if w is None else w
    den = float((w * pred * pred).sum())
    return max(0.0, float((w * pred * obs).sum()) / den) if den > 0 else 0.0


@dataclass(frozen=True)
class Agreement:
    """A prediction against the observation: R², sign accuracy, Pearson r with 95% bootstrap intervals,
    the η used (``eta`` 1.0 when taken as given) and the number of points."""

    r2: float
    r2_ci: CI
    sign_acc: float
    sign_acc_ci: CI
    corr: float
    corr_ci: CI
    eta: float
    n: int

    @classmethod
    def empty(cls) -> "Agreement":
        return cls(NAN, (NAN, NAN), NAN, (NAN, NAN), NAN, (NAN, NAN), NAN, 0)


def agreement(obs, pred, *, weights=None, fit_eta: bool = False, n_boot: int = 200,
              seed: int = 0) -> Agreement:
    """R², sign accuracy and Pearson r of ``pred`` (``[N]``) against ``obs`` (``[N]``) over the finite
    points, with ``weights`` (``[N]``, >= 0; default 1). ``fit_eta``: ``pred`` is scaled by
    :func:`nonneg_scale` (refitted in every bootstrap sample). Intervals: 2.5/97.5 percentiles over
    ``n_boot`` resamples of the points (seeded generator). ValueError on mismatched shapes or negative
    weights."""
    obs, pred = _as_1d(obs), _as_1d(pred)
    if obs.shape != pred.shape:
        raise ValueError(f"obs and pred must have the same size, got {obs.size} and {pred.size}")
    w = np.ones_like(obs) if weights is None else _as_1d(weights)
    if w.shape != obs.shape:
        raise ValueError(f"weights must have the size of obs ({obs.size}), got {w.size}")
    if (w < 0).any():
        raise ValueError("weights must be non-negative")
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    keep = np.isfinite(obs) & np.isfinite(pred) & np.isfinite(w) & (w > 0)
    obs, pred, w = obs[keep], pred[keep], w[keep]
    if obs.size < 3:
        return Agreement.empty()

    def stats(o, p, ww):
        c = nonneg_scale(o, p, ww) if fit_eta else 1.0
        return r2(o, c * p, ww), sign_accuracy(o, p, ww), pearson(o, p), c

    r, s, c, eta = stats(obs, pred, w)
    rng = np.random.default_rng(seed)
    boot = np.array([stats(obs[i], pred[i], w[i])[:3]
                     for i in (rng.integers(0, obs.size, obs.size) for _ in range(n_boot))]).reshape(-1, 3)

    def ci(j) -> CI:
        col = boot[:, j][np.isfinite(boot[:, j])]
        return (float(np.percentile(col, 2.5)), float(np.percentile(col, 97.5))) if col.size else (NAN, NAN)

    return Agreement(r, ci(0), s, ci(1), c, ci(2), eta, int(obs.size))


def block_bootstrap_corr(x, y, *, block: int = 5, n_boot: int = 500, seed: int = 0) -> tuple[float, CI]:
    """Pearson r of two per-step series (``[T]`` each, NaN pairs dropped) and its 95% moving-block
    bootstrap interval: each resample joins ceil(T / ``block``) random windows of ``block`` consecutive
    steps (seeded). ValueError on mismatched sizes or ``block`` < 1."""
    x, y = _as_1d(x), _as_1d(y)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same size, got {x.size} and {y.size}")
    if block < 1 or n_boot < 0:
        raise ValueError(f"need block >= 1 and n_boot >= 0, got {block}, {n_boot}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    r = pearson(x, y)
    if not math.isfinite(r):
        return r, (NAN, NAN)
    b = min(block, x.size)
    rng = np.random.default_rng(seed)
    starts = np.arange(x.size - b + 1)
    reps = []
    for _ in range(n_boot):
        picks = rng.choice(starts, math.ceil(x.size / b))
        idx = np.concatenate([np.arange(s, s + b) for s in picks])[:x.size]
        reps.append(pearson(x[idx], y[idx]))
    reps = np.array(reps)
    reps = reps[np.isfinite(reps)]
    if not reps.size:
        return r, (NAN, NAN)
    return r, (float(np.percentile(reps, 2.5)), float(np.percentile(reps, 97.5)))
