"""Theory checks the paper lacks: first-order error vs step size, and predicted vs observed ΔH
(Cui et al. 2025, Lemma 1 / Theorems 1-2; docs/theory.md §1.2, §1.5, §5 item 1).

* Error vs step size: simulator runs of one world at several learning rates η (same seed, so the same
  initial logits); at the first step, the median over instances of |ΔH_obs − ΔH_first| against η on
  log-log axes. A first-order (Taylor) prediction leaves an O(η²) error: slope 2.
* Predicted vs observed: for simulator runs the theorem's prediction (Theorem 1, ``dH_thm1``; Theorem 2,
  ``dH_thm2``, for the NPG rules) against the exact change, per state (pooled over steps, runs and
  visited states, weighted by visitation) and per step (aggregated ``agg_*``), as R², sign accuracy and
  Pearson r with bootstrap CIs (:class:`TheoremCheck`; η the optimizer's step for SGD / exact rules,
  else one η >= 0 fitted per run). Lemma 1 on the measured step is an identity, not a prediction,
  and is not graded here. For LLM runs the batch covariance (Eq. 10, the
  predicted direction: ΔH ∝ −Cov) against the observed change of the training entropy, with the
  least-squares slope (an effective step size) and Pearson r.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from theory.agreement import Agreement, agreement
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
class TheoremCheck:
    """A simulator run's theorem prediction against the observed ΔH (see the module docstring)."""

    label: str
    rule: str
    """``theorem1`` or ``theorem2``"""
    eta_source: str
    per_state: Agreement
    per_step: Agreement


TIE = 1e-12
"""|ΔH_obs| at or under which a state did not move (unvisited by the sampled batch): left out"""


def theorem_check(c, n_boot: int = 200, seed: int = 0) -> TheoremCheck | None:
    """:class:`TheoremCheck` of simulator curves ``c`` (None when it lacks the theorem arrays)."""
    a = c.arrays
    rule = "theorem2" if c.meta.get("rule") in ("npg", "entropy_npg") else "theorem1"
    key = "dH_thm2" if rule == "theorem2" else "dH_thm1"
    if key not in a or "dH_obs" not in a:
        return None
    sgd = c.meta.get("rule") != "grpo" and c.config.get("optimizer", "sgd") == "sgd"
    obs = a["dH_obs"].astype(float)
    moved = np.abs(obs) > TIE
    per_state = agreement(obs[moved], a[key][moved], weights=a["state_weight"][moved], fit_eta=not sgd,
                          n_boot=n_boot, seed=seed)
    per_step = agreement(a["agg_dH_obs"], a[f"agg_{key}"], fit_eta=not sgd, n_boot=n_boot, seed=seed)
    return TheoremCheck(c.label, rule, "optimizer lr (SGD)" if sgd else "fitted once per run, eta >= 0",
                        per_state, per_step)


@dataclass(frozen=True)
class TheoryResult:
    """Data behind the theory figure (``step_size`` None when no step-size runs were given)."""

    step_size: StepSizeError | None
    scatter: tuple[ScatterRun, ...]
    files: tuple[Path, ...] = ()
    theorem: tuple[TheoremCheck, ...] = ()
    """per simulator scatter run: the theorem against the observed ΔH"""

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
            thm2 = c.meta.get("rule") in ("npg", "entropy_npg")
            pred = c.arrays["agg_dH_thm2" if thm2 else "agg_dH_thm1"].ravel()
            obs = c.arrays["agg_dH_obs"].ravel()
            xlabel = f"Theorem {2 if thm2 else 1} dH (eta = lr)"
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
    curves = load_many(scatter_dirs) if scatter_dirs else []
    checks = tuple(t for t in (theorem_check(c) for c in curves if c.kind == "sim") if t is not None)
    data = TheoryResult(step_size=error_vs_step_data(load_many(step_size_dirs)) if step_size_dirs else None,
                        scatter=scatter_data(curves), theorem=checks)
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
            ax.scatter(r.pred, r.obs, s=4, alpha=0.4, color=color(i),
                       label=f"{r.label} (r={r.pearson:.2f})")
        ax.set(xlabel=runs[0].xlabel if runs else "predicted", ylabel="observed dH",
               title="sim: theorem vs observed (per step)" if kind == "sim" else "LLM: -Cov vs observed dH")
        if runs:
            ax.legend(fontsize=SMALL_LEGEND)
    return replace(data, files=tuple(save_figure(fig, out_stem, pdf)))
