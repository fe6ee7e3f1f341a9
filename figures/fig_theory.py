"""Theory checks the paper lacks: first-order error vs step size, and predicted vs observed ΔH
(Cui et al. 2025, Lemma 1 / Theorems 1-2; docs/theory.md §1.2, §1.5, §5 item 1).

* Error vs step size: simulator runs of one world at several learning rates η (same seed, so the same
  initial logits); at the first step, the median over instances of |ΔH_obs − ΔH_first| against η on
  log-log axes. A first-order (Taylor) prediction leaves an O(η²) error: slope 2.
* Predicted vs observed: per-step aggregated ΔH predicted by Lemma 1 (``agg_dH_first``) against the
  exact change (``agg_dH_obs``) for simulator runs; for LLM runs the batch covariance (Eq. 10, the
  predicted direction: ΔH ∝ −Cov) against the observed change of the training entropy, with the
  least-squares slope (an effective step size) and Pearson r.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .curves import load_many
from .style import color, new_figure, save_figure, SMALL_LEGEND


@dataclass(frozen=True)
class StepSizeError:
    """First-step median |ΔH_obs − ΔH_first| at each step size, and its log-log slope."""

    lr: np.ndarray
    error: np.ndarray
    slope: float


@dataclass(frozen=True)
class ScatterRun:
    """One run's predicted vs observed ΔH, with the least-squares slope and Pearson r."""

    label: str
    kind: str
    pred: np.ndarray
    obs: np.ndarray
    xlabel: str
    slope: float
    pearson: float


@dataclass(frozen=True)
class TheoryResult:
    """Data behind the theory figure (``step_size`` None when no step-size runs were given)."""

    step_size: StepSizeError | None
    scatter: tuple[ScatterRun, ...]
    files: tuple[Path, ...] = ()

    def first(self, kind: str) -> ScatterRun | None:
        """The first scatter run of ``kind`` (``"llm"`` or ``"sim"``), None when there is none."""
        return next((r for r in self.scatter if r.kind == kind), None)


def error_vs_step_data(curves) -> StepSizeError:
    """``lr``, first-step median error and the fitted log-log slope over simulator runs."""
    sims = sorted((c for c in curves if c.kind == "sim"), key=lambda c: c.meta["lr"])
    lr = np.array([c.meta["lr"] for c in sims], dtype=float)
    err = np.array([np.median(np.abs(c.arrays["dH_obs"][0] - c.arrays["dH_first"][0])) for c in sims])
    slope = float("nan")
    keep = (lr > 0) & (err > 0) & np.isfinite(err)
    if keep.sum() >= 2:
        slope = float(np.polyfit(np.log(lr[keep]), np.log(err[keep]), 1)[0])
    return StepSizeError(lr=lr, error=err, slope=slope)


def scatter_data(curves, max_points: int = 4000, seed: int = 0) -> tuple[ScatterRun, ...]:
    """Per run: predicted and observed ΔH (subsampled with a seeded generator), slope and Pearson r."""
    rng = np.random.default_rng(seed)
    out = []
    for c in curves:
        if c.kind == "sim":
            pred, obs = c.arrays["agg_dH_first"].ravel(), c.arrays["agg_dH_obs"].ravel()
            xlabel = "Lemma 1 first-order dH"
        else:
            pred, obs = -c.cov[:-1], c.dH[:-1]
            xlabel = "-Cov (Eq. 10 batch mean)"
        keep = np.isfinite(pred) & np.isfinite(obs)
        pred, obs = pred[keep], obs[keep]
        if pred.size > max_points:
            idx = rng.choice(pred.size, max_points, replace=False)
            pred, obs = pred[idx], obs[idx]
        ok = pred.size >= 3 and np.std(pred) > 0 and np.std(obs) > 0
        out.append(ScatterRun(label=c.label, kind=c.kind, pred=pred, obs=obs, xlabel=xlabel,
                              slope=float(np.dot(pred, obs) / np.dot(pred, pred)) if ok else float("nan"),
                              pearson=float(np.corrcoef(pred, obs)[0, 1]) if ok else float("nan")))
    return tuple(out)


def plot_theory(step_size_dirs, scatter_dirs, out_stem: str | Path, pdf: bool = False) -> TheoryResult:
    """Draw error vs η (log-log, with a slope-2 guide) and the predicted-vs-observed scatters."""
    data = TheoryResult(step_size=error_vs_step_data(load_many(step_size_dirs)) if step_size_dirs else None,
                        scatter=scatter_data(load_many(scatter_dirs)) if scatter_dirs else ())
    fig, (ax_e, ax_s, ax_l) = new_figure(3, width=3.8)
    ss = data.step_size
    if ss is not None and ss.lr.size:
        ax_e.loglog(ss.lr, ss.error, "o-", color=color(0), label=f"measured (slope {ss.slope:.2f})")
        ax_e.loglog(ss.lr, ss.error[0] * (ss.lr / ss.lr[0]) ** 2, ":", color="grey", label="slope 2")
        ax_e.legend()
    ax_e.set(xlabel="step size eta", ylabel="|dH_obs - dH_first|", title="first-order error (Lemma 1)")
    for ax, kind in ((ax_s, "sim"), (ax_l, "llm")):
        runs = [r for r in data.scatter if r.kind == kind]
        for i, r in enumerate(runs):
            ax.scatter(r.pred, r.obs, s=4, alpha=0.4, color=color(i), label=f"{r.label} (r={r.pearson:.2f})")
        if kind == "sim" and runs:
            lim = max(max(np.abs(r.pred).max(), np.abs(r.obs).max()) for r in runs if r.pred.size)
            ax.plot([-lim, lim], [-lim, lim], color="grey", lw=0.8)
        ax.set(xlabel=runs[0].xlabel if runs else "predicted", ylabel="observed dH",
               title="simulators: predicted vs observed" if kind == "sim" else "LLM: -Cov vs observed dH")
        if runs:
            ax.legend(fontsize=SMALL_LEGEND)
    return replace(data, files=tuple(save_figure(fig, out_stem, pdf)))
